from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.base import Base, utcnow


class LiveSession(Base):
    """One Voice Live conversation the service can speak into (relayed now; attached later).

    The row is shared state (any replica can read it); the socket and the per-session queue live
    only in the process named by ``replica``."""

    __tablename__ = "live_sessions"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    voicelive_session_id: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    state: Mapped[str] = mapped_column(sa.String(20), index=True)
    conversation_key: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    locale: Mapped[str | None] = mapped_column(sa.String(35))
    principal: Mapped[str] = mapped_column(sa.String(200), index=True)
    key_id: Mapped[str | None] = mapped_column(sa.String(40))
    model: Mapped[str | None] = mapped_column(sa.String(200))
    greeting_policy: Mapped[str | None] = mapped_column(sa.String(100))
    replica: Mapped[str | None] = mapped_column(sa.String(300))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(sa.Text)
