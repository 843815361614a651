"""Annotated types shared by request bodies and query parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, model_validator


def as_utc(value: datetime) -> datetime:
    """Times without a zone are taken as UTC, the zone the service answers in."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:00 has no UTC equivalent
        raise ValueError("the time is out of range") from exc


UtcTime = Annotated[datetime, AfterValidator(as_utc)]


def _refuse_unstorable(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain the NUL character (U+0000)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate such as "\udc00"
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(item)
    elif isinstance(value, list):
        for item in value:
            _refuse_unstorable(item)


class RequestBody(BaseModel):
    """Base of every request body. Text no database column can hold (U+0000, which PostgreSQL
    refuses and SQLite keeps; lone surrogates, which are not UTF-8) is refused up front on both
    backends as a 422, instead of failing in the database or when it is hashed."""

    @model_validator(mode="before")
    @classmethod
    def _only_storable_text(cls, data: Any) -> Any:
        _refuse_unstorable(data)
        return data
