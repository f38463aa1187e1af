"""Bridle: align language models with human or AI preferences."""

__version__ = "0.1.0"
