from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from service.kit.base import Base, JSONType, utcnow


class ApiKey(Base):
    """A key is stored only as its SHA-256: keys are 256-bit random, so a slow hash adds nothing."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    principal: Mapped[str] = mapped_column(sa.String(200), index=True)
    roles: Mapped[list[str]] = mapped_column(JSONType)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(sa.String(200))
