"""Terrasynth: synthetic satellite imagery with diffusion models, and the tools to judge it."""

__version__ = "0.1.0"
