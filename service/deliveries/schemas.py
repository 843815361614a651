from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from service.deliveries.states import Priority, Status
from service.kit.types import RequestBody
from service.phrases.schemas import Locale, PhraseKey

MAX_WAIT_SECONDS = 120.0


class DeliveryCreate(RequestBody):
    phrase_key: PhraseKey = Field(description="The phrase whose approved text is spoken.")
    locale: Locale | None = Field(
        default=None, description="Default: the session's locale, else the phrase's default."
    )
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="Pin an approved version (default: in force)."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, max_length=50, description="Values for the text's {{variables}}."
    )
    priority: Priority = Field(
        default=Priority.APPEND,
        description="append: after what plays; interrupt: now; if_idle: only when idle, "
        "else skipped.",
    )
    interruptible: bool = Field(
        default=True,
        description="false: a barge-in replays it (up to COMPLIANCE_DELIVERY_MAX_PLAYS plays).",
    )
    wait: float | None = Field(
        default=None,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Seconds to wait for the final state; 200 when it ended in time.",
    )


class AttemptRead(BaseModel):
    number: int
    sent_at: datetime
    response_id: str | None
    item_id: str | None
    started_at: datetime | None
    first_audio_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    reason: str | None
    played_ms: int | None


class DeliveryRead(BaseModel):
    id: str
    session_id: str
    kind: str = Field(description="phrase, or greeting (sent by the session's greeting policy).")
    greeting_policy: str | None
    phrase_key: str | None
    version: int | None
    locale: str | None
    text: str | None = Field(description="The rendered text that was sent, word for word.")
    instructions: str | None = Field(description="A generated greeting's instructions.")
    sha256: str | None = Field(description="Hex SHA-256 of the UTF-8 text.")
    status: Status
    priority: Priority
    interruptible: bool
    attempts: int
    max_attempts: int = Field(description="Plays allowed before an interruption is final.")
    response_id: str | None
    item_id: str | None
    transcript: str | None = Field(description="The transcript the upstream returned.")
    transcript_verified: bool | None = Field(
        description="Whether that transcript equals the text exactly (null: not known)."
    )
    played_ms: int | None
    failure_reason: str | None
    requested_by: str
    requested_at: datetime
    sent_at: datetime | None
    started_at: datetime | None
    first_audio_at: datetime | None
    ended_at: datetime | None
    attempt_log: list[AttemptRead] = Field(description="Every response.create sent for it.")


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None
