"""Loom: ML infrastructure as YAML."""

__version__ = "0.1.0"
