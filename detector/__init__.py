"""Streaming exposure anomaly detector: observed experiment exposure vs. the declared population."""

__version__ = "0.1.0"
