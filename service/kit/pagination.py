"""Opaque keyset cursors: the client hands back what it was given, never an offset."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, TypeVar

from fastapi import Query

from service.kit.errors import InvalidInput

T = TypeVar("T", int, str)

Limit = Annotated[int, Query(ge=1, le=500, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=500, description="`next_cursor` of the last page.")]


def encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, expected: type[T]) -> T:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        value = None
    if isinstance(value, bool):  # a JSON true is an int to Python, never a cursor here
        value = None
    if isinstance(value, int) and expected is int and 0 <= value < 2**63:
        return expected(value)
    if isinstance(value, str) and expected is str and "\x00" not in value:
        return expected(value)
    raise InvalidInput("cursor is not one this service issued", param="cursor")
