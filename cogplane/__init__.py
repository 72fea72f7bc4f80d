"""cogplane: a self-hosted, Replicate-compatible platform for running Cog models."""

__version__ = "0.1.0"
