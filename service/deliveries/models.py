from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.kit.base import Base, JSONType, utcnow


class Delivery(Base):
    """One request to speak approved wording into a session, and the proof of what happened.

    ``text``/``sha256`` are what was sent (rendered); ``transcript`` is what the upstream said it
    spoke. A generated greeting has ``instructions`` and no text."""

    __tablename__ = "deliveries"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.ForeignKey("live_sessions.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    greeting_policy: Mapped[str | None] = mapped_column(sa.String(100))
    phrase_key: Mapped[str | None] = mapped_column(sa.String(100))
    version: Mapped[int | None]
    locale: Mapped[str | None] = mapped_column(sa.String(35))
    text: Mapped[str | None] = mapped_column(sa.Text)
    instructions: Mapped[str | None] = mapped_column(sa.Text)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    priority: Mapped[str] = mapped_column(sa.String(20))
    interruptible: Mapped[bool]
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=1)
    response_id: Mapped[str | None] = mapped_column(sa.String(200))
    item_id: Mapped[str | None] = mapped_column(sa.String(200))
    transcript: Mapped[str | None] = mapped_column(sa.Text)
    transcript_verified: Mapped[bool | None]
    played_ms: Mapped[int | None]
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    requested_by: Mapped[str] = mapped_column(sa.String(200))
    requested_key_id: Mapped[str | None] = mapped_column(sa.String(40))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    request_hash: Mapped[str | None] = mapped_column(sa.String(64))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    first_audio_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    attempt_rows: Mapped[list[DeliveryAttempt]] = relationship(
        lazy="raise", order_by="DeliveryAttempt.number", cascade="all, delete-orphan"
    )

    __table_args__ = (
        # Idempotency keys are scoped to the principal that sent them (NULLs never collide).
        sa.UniqueConstraint("requested_by", "idempotency_key"),
    )


class DeliveryAttempt(Base):
    """One ``response.create`` sent for a delivery: a replay after a barge-in or a retry after a
    collision is a new attempt, so the record shows each time the wording went out."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    event_id: Mapped[str] = mapped_column(sa.String(100))
    sent_at: Mapped[datetime]
    response_id: Mapped[str | None] = mapped_column(sa.String(200))
    item_id: Mapped[str | None] = mapped_column(sa.String(200))
    started_at: Mapped[datetime | None]
    first_audio_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(sa.String(20))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    played_ms: Mapped[int | None]

    __table_args__ = (sa.UniqueConstraint("delivery_id", "number"),)
