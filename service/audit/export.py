"""The audit trail as one self-contained file, and its verification with a public key alone.

JSON Lines (UTF-8, one JSON object a line), in this order:

1. a header: ``{"format": "compliance-service audit export", "version": 1, "exported_at": ...}``;
2. every checkpoint, oldest first: ``{"type": "checkpoint", "seq", "head_hash", "signed_at",
   "key_id", "signature"}``;
3. every event in ``seq`` order: ``{"type": "event", "seq", "at", "principal", "key_id",
   "action", "subject_type", "subject_id", "details", "prev_hash", "hash"}`` (the fields of
   ``GET /v1/audit``);
4. an end line: ``{"type": "end", "events": N, "checkpoints": M}``, so a file cut short in
   transfer is told from a complete one.

Times are UTC ISO 8601 with microseconds. Nothing in the file is trusted by its verifier: the
chain is recomputed and every checkpoint checked against the public keys given on the command
line (a key inside the file would prove nothing).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import service
from service.audit.chain import HASHED_FIELDS, Verification, canonical_time
from service.audit.checkpoints import Checkpoint, SignedChainCheck
from service.kit.base import utcnow

FORMAT = "compliance-service audit export"
VERSION = 1
MEDIA_TYPE = "application/jsonl"
EVENT_FIELDS = (*HASHED_FIELDS, "hash")

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class NotAnExport(ValueError):
    """The file is not an audit export of this service (or of a version it cannot read)."""


def _line(record: Mapping[str, Any]) -> str:
    return _ENCODER.encode(record) + "\n"


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "event"}
    for name in EVENT_FIELDS:
        value = event[name]
        record[name] = canonical_time(value) if isinstance(value, datetime) else value
    return record


async def export_lines(db: AsyncSession) -> AsyncIterator[str]:
    """The export of the database ``db`` reads, line by line (memory stays flat)."""
    yield _line({"format": FORMAT, "version": VERSION, "exported_at": canonical_time(utcnow())})
    # Checkpoints first, read before the events: every event they vouch for is then in the file.
    stored = await service.stored_checkpoints(db)
    for checkpoint in stored:
        yield _line({"type": "checkpoint", **checkpoint.as_json()})
    events = 0
    async for event in service.iter_events(db):
        yield _line(event_record(event))
        events += 1
    yield _line({"type": "end", "events": events, "checkpoints": len(stored)})


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, the line's object, or None when it is no JSON object), after the header."""
    with path.open(encoding="utf-8") as file:
        header_line = file.readline()
        try:
            header = json.loads(header_line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise NotAnExport(f"{path} is not an audit export (its first line is no header)")
        if header.get("version") != VERSION:
            raise NotAnExport(
                f"{path} is an audit export of version {header.get('version')!r}; "
                f"this verifier reads version {VERSION}"
            )
        for number, text in enumerate(file, start=2):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            yield number, record if isinstance(record, dict) else None


def _checkpoints_of(path: Path) -> tuple[list[Checkpoint], str | None]:
    found: list[Checkpoint] = []
    for number, record in _records(path):
        if record is not None and record.get("type") == "checkpoint":
            try:
                found.append(Checkpoint.from_mapping(record))
            except (ValueError, TypeError):
                return found, f"line {number} is not a well-formed checkpoint: it was altered"
    return found, None


def verify_file(path: Path, trusted: Mapping[str, Ed25519PublicKey]) -> Verification:
    """Verify an export: the chain, and each checkpoint with the ``trusted`` keys (by key id).

    Read twice, so memory stays flat: first its checkpoints, then its events. Raises
    NotAnExport (and OSError) when the file cannot be taken for an export at all.
    """
    checkpoints, problem = _checkpoints_of(path)
    check = SignedChainCheck(checkpoints, trusted)
    if problem is not None:
        check.fail_unsigned(problem)
        return check.result()
    end: dict[str, Any] | None = None
    events = 0
    for number, record in _records(path):
        kind = record.get("type") if record is not None else None
        if record is None or kind not in ("event", "checkpoint", "end") or end is not None:
            check.fail_at_next(f"line {number} is not a record of an audit export: it was altered")
            return check.result()
        if kind == "end":
            end = record
        elif kind == "event":
            events += 1
            try:
                fed = check.feed(record)
            except (KeyError, TypeError, ValueError):
                check.fail_at_next(f"line {number} is not a well-formed event: it was altered")
                return check.result()
            if not fed:
                return check.result()
    if end is None:
        check.fail_at_next("the file ends without its end line: it was cut off")
    elif (end.get("events"), end.get("checkpoints")) != (events, len(checkpoints)):
        check.fail_at_next(
            f"the file holds {events} events and {len(checkpoints)} checkpoints, but its end line "
            f"counts {end.get('events')!r} and {end.get('checkpoints')!r}: records were removed"
        )
    return check.result()
