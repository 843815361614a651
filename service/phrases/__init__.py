"""The phrase library: phrases, immutable numbered versions, four-eyes approval, resolution."""

# Loaded with any part of the library, so that no process can write to it without raising the
# library's generation (the hooks that keep every replica's cache honest).
from service.phrases import generation as generation
