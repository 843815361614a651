"""Who did something: the principal and the API key they used (None for the operator's CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    principal: str
    key_id: str | None = None


SYSTEM = Actor("system")
