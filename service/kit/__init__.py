"""Shared plumbing: database, base model, errors, pagination. Used by every capability package."""
