"""Compliance-message service: approved wording, spoken word for word, with proof."""

__version__ = "0.1.0"
