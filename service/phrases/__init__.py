"""The phrase library: phrases, immutable numbered versions, four-eyes approval, resolution."""
