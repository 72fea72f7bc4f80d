"""The deployed shape of cogplane, simulated offline on one machine (`make sim-aws`): see stack.py."""
