"""Use cases. They depend on ports only; the wiring module picks the adapters."""
