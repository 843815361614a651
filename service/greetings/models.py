from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.base import Base, utcnow


class GreetingPolicy(Base):
    """How a session opens: an approved phrase spoken word for word (``pregenerated``) or a reply
    the model writes from ``instructions`` (``generated``)."""

    __tablename__ = "greeting_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    mode: Mapped[str] = mapped_column(sa.String(20))
    phrase_key: Mapped[str | None] = mapped_column(sa.String(100))
    instructions: Mapped[str | None] = mapped_column(sa.Text)
    interruptible: Mapped[bool] = mapped_column(default=False)
    is_default: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(sa.String(200))


class GreetingGuard(Base):
    """At most one greeting per conversation key, across reconnects and replicas: the primary key
    is the guard. It names the delivery that holds it, so a greeting that was never heard (failed
    or expired before any audio) can be taken over by the next connection."""

    __tablename__ = "greeting_guards"

    conversation_key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    session_id: Mapped[str] = mapped_column(sa.String(40))
    delivery_id: Mapped[str] = mapped_column(sa.String(40))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)
