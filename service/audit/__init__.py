"""Append-only, hash-chained audit trail: every change, written in the transaction of the change."""
