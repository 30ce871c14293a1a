"""simreal: sim-to-real transfer for reinforcement learning."""

__version__ = "0.1.0"
