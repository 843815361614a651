"""The names a delivery's record uses: its priority and the statuses it moves through."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    APPEND = "append"  # after whatever is playing
    INTERRUPT = "interrupt"  # now: cuts what is playing (never a non-interruptible delivery)
    IF_IDLE = "if_idle"  # only if nothing plays or waits; skipped otherwise


class Status(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    STARTED = "started"
    SPEAKING = "speaking"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    EXPIRED = "expired"
    SKIPPED = "skipped"


FINAL = frozenset(
    {Status.COMPLETED, Status.INTERRUPTED, Status.FAILED, Status.EXPIRED, Status.SKIPPED}
)
