"""The pure rules of the chain: canonical form, hash, and the walk that finds the first bad link.

Kept free of the database so an exported file can be verified with exactly the same code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "seq",
    "at",
    "principal",
    "key_id",
    "action",
    "subject_type",
    "subject_id",
    "details",
    "prev_hash",
)


# The same output as json.dumps with these arguments, without building an encoder per event.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_time(at: datetime) -> str:
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")


def canonical_bytes(event: Mapping[str, Any]) -> bytes:
    """Sorted keys, no insignificant white space, UTF-8, times as UTC ISO 8601 with microseconds."""
    fields = {name: event[name] for name in HASHED_FIELDS}
    at = fields["at"]
    if isinstance(at, str):
        # Read back from JSON (the API writes "Z" and drops zero microseconds): the same instant
        # must hash the same however it is spelled. A string that is no zoned time stays as is.
        try:
            parsed = datetime.fromisoformat(at)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            at = parsed
    if isinstance(at, datetime):
        fields["at"] = canonical_time(at)
    return _ENCODER.encode(fields).encode()


def event_hash(event: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    # Signed checkpoints (service.audit.checkpoints); all empty when no public key was given.
    checkpoints_checked: int = 0
    last_signed_seq: int | None = None
    public_key_ids: tuple[str, ...] = ()


class ChainCheck:
    """Fed events in ``seq`` order; remembers the first one that breaks the chain."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.checked = 0
        self.first_bad_seq: int | None = None
        self.problem: str | None = None

    def feed(self, event: Mapping[str, Any]) -> bool:
        """Check one event; False once the chain is broken (feed no more after that)."""
        seq = int(event["seq"])
        if not self._in_sequence(seq):
            return False
        if event["prev_hash"] != self.prev_hash:
            return self._break(
                seq,
                f"event {seq} does not link to event {seq - 1}: its prev_hash differs from that "
                "event's hash (an event was inserted, replaced or rehashed)",
            )
        if event_hash(event) != event["hash"]:
            return self._break(seq, f"event {seq} was altered: its content does not match its hash")
        self.prev_hash = str(event["hash"])
        self.expected_seq += 1
        self.checked += 1
        return True

    def feed_unreadable(self, seq: int) -> bool:
        """The stored event ``seq`` cannot even be read (a value that is no longer of its column's
        type: SQLite keeps whatever is written). Always False."""
        if not self._in_sequence(seq):
            return False
        return self._break(
            seq, f"event {seq} was altered: a stored value can no longer be read as its type"
        )

    def _in_sequence(self, seq: int) -> bool:
        if seq == self.expected_seq:
            return True
        return self._break(
            self.expected_seq,
            f"event {self.expected_seq} is missing: the chain jumps from "
            f"{self.expected_seq - 1} to {seq} (deleted or renumbered)",
        )

    def _break(self, seq: int, problem: str) -> bool:
        self.first_bad_seq, self.problem = seq, problem
        return False

    def result(self) -> Verification:
        return Verification(
            ok=self.first_bad_seq is None,
            checked=self.checked,
            head_seq=self.expected_seq - 1,
            head_hash=self.prev_hash,
            first_bad_seq=self.first_bad_seq,
            problem=self.problem,
        )


def verify_chain(events: Iterable[Mapping[str, Any]]) -> Verification:
    check = ChainCheck()
    for event in events:
        if not check.feed(event):
            break
    return check.result()
