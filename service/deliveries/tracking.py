"""What the conductor works with: a delivery as one session's engine follows it, its attempts,
and the effects the conductor asks the engine to carry out (send, record, time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.deliveries.states import FINAL, Priority, Status

METADATA_KEY = "compliance_delivery_id"


@dataclass
class Attempt:
    """One ``response.create`` sent for a delivery."""

    number: int
    event_id: str
    sent_at: datetime
    response_id: str | None = None
    item_id: str | None = None
    started_at: datetime | None = None
    first_audio_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    played_ms: int | None = None


@dataclass
class Tracked:
    """A delivery as the session's engine follows it; ``snapshot()`` is what gets persisted."""

    id: str
    text: str | None
    instructions: str | None
    priority: Priority
    interruptible: bool
    max_plays: int
    greeting: bool = False
    status: Status = Status.QUEUED
    attempts: list[Attempt] = field(default_factory=list)
    plays: int = 0
    collisions: int = 0
    response_id: str | None = None
    item_id: str | None = None
    transcript: str | None = None
    transcript_verified: bool | None = None
    played_ms: int | None = None
    failure_reason: str | None = None
    sent_at: datetime | None = None
    started_at: datetime | None = None
    first_audio_at: datetime | None = None
    ended_at: datetime | None = None
    # Per attempt, not persisted: audio sent so far and when it started (monotonic seconds).
    audio_ms: float = 0.0
    audio_began: float | None = None
    truncated_ms: int | None = None
    truncated_why: str | None = None

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def snapshot(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "attempts": len(self.attempts),
            "response_id": self.response_id,
            "item_id": self.item_id,
            "transcript": self.transcript,
            "transcript_verified": self.transcript_verified,
            "played_ms": self.played_ms,
            "failure_reason": self.failure_reason,
            "sent_at": self.sent_at,
            "started_at": self.started_at,
            "first_audio_at": self.first_audio_at,
            "ended_at": self.ended_at,
        }


@dataclass(frozen=True, eq=False)
class AgentRequest:
    """A ``response.create`` the agent sent itself: a response of its own is about to start."""

    event_id: str | None
    at: datetime


@dataclass(frozen=True)
class Send:
    event: dict[str, Any]
    delivery_id: str | None = None


@dataclass(frozen=True)
class Record:
    """Persist a delivery's state after a transition; ``action`` names the audit event."""

    delivery_id: str
    action: str
    fields: dict[str, Any]
    attempt: dict[str, Any] | None
    final: bool


@dataclass(frozen=True)
class AnswerTimer:
    """Fail the attempt unless the upstream answered it by then."""

    delivery_id: str
    event_id: str


@dataclass(frozen=True)
class SilenceTimer:
    """Check after ``seconds`` that the upstream is still heard about our active response."""

    delivery_id: str
    response_id: str
    seconds: float


@dataclass(frozen=True)
class RetryLater:
    """Try sending again shortly (a collision with a response we never saw start)."""

    seconds: float


Effect = Send | Record | AnswerTimer | SilenceTimer | RetryLater


def response_create(tracked: Tracked, attempt: Attempt) -> dict[str, Any]:
    """The event that speaks a delivery. ``cancel_previous`` is false: the conductor itself decides
    what may be cut off (an ``interrupt`` delivery cancels explicitly first)."""
    response: dict[str, Any] = {
        "cancel_previous": False,
        "metadata": {METADATA_KEY: tracked.id, "attempt": str(attempt.number)},
    }
    if tracked.text is not None:
        response["pre_generated_assistant_message"] = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": tracked.text}],
        }
    else:
        response["instructions"] = tracked.instructions
    return {"type": "response.create", "event_id": attempt.event_id, "response": response}
