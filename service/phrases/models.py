from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.kit.base import Base, JSONType, utcnow


class Phrase(Base):
    __tablename__ = "phrases"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(100), unique=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str | None] = mapped_column(sa.Text)
    category: Mapped[str] = mapped_column(sa.String(20), index=True)
    default_locale: Mapped[str] = mapped_column(sa.String(35))
    cross_language_fallback: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tags: Mapped[list[PhraseTag]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="PhraseTag.tag"
    )


class PhraseTag(Base):
    __tablename__ = "phrase_tags"

    phrase_id: Mapped[int] = mapped_column(
        sa.ForeignKey("phrases.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(sa.String(50), primary_key=True, index=True)


class PhraseVersion(Base):
    """Content (texts, variables, note, window) never changes once the version leaves draft.
    ``revision`` is the optimistic-concurrency counter behind the ETag: SQLAlchemy bumps it on
    every UPDATE and refuses an UPDATE whose revision moved underneath it."""

    __tablename__ = "phrase_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    phrase_id: Mapped[int] = mapped_column(sa.ForeignKey("phrases.id"), index=True)
    number: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20), index=True)
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    change_note: Mapped[str | None] = mapped_column(sa.Text)
    effective_from: Mapped[datetime | None]
    effective_until: Mapped[datetime | None]
    author: Mapped[str] = mapped_column(sa.String(200))
    editors: Mapped[list[str]] = mapped_column(JSONType)
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    submitted_by: Mapped[str | None] = mapped_column(sa.String(200))
    approved_at: Mapped[datetime | None]
    rejected_at: Mapped[datetime | None]
    rejected_by: Mapped[str | None] = mapped_column(sa.String(200))
    rejection_reason: Mapped[str | None] = mapped_column(sa.Text)
    retired_at: Mapped[datetime | None]
    retired_by: Mapped[str | None] = mapped_column(sa.String(200))
    retirement_reason: Mapped[str | None] = mapped_column(sa.Text)

    phrase: Mapped[Phrase] = relationship(lazy="raise")
    texts: Mapped[list[VersionText]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="VersionText.locale"
    )
    approvals: Mapped[list[VersionApproval]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="VersionApproval.id"
    )

    __table_args__ = (sa.UniqueConstraint("phrase_id", "number"),)
    __mapper_args__ = {"version_id_col": revision}


class VersionText(Base):
    __tablename__ = "version_texts"

    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("phrase_versions.id", ondelete="CASCADE"), primary_key=True
    )
    locale: Mapped[str] = mapped_column(sa.String(35), primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)


class VersionApproval(Base):
    __tablename__ = "version_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("phrase_versions.id", ondelete="CASCADE"), index=True
    )
    principal: Mapped[str] = mapped_column(sa.String(200))
    key_id: Mapped[str | None] = mapped_column(sa.String(40))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.UniqueConstraint("version_id", "principal"),)


class LibraryGeneration(Base):
    """One row (id 1): a counter raised in the same transaction as every committed change to the
    tables above, so that a cache of them can tell cheaply whether it is still current, in this
    process and in every other one on the same database (see ``service.phrases.generation``)."""

    __tablename__ = "phrase_library_generation"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(sa.BigInteger)
