"""Appending to and reading the chain. Callers pass their open session: the audit event is written
in the same transaction as the change it records, or not at all."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.audit.chain import GENESIS_HASH, ChainCheck, Verification, event_hash
from service.audit.models import AuditEvent
from service.kit.actor import Actor
from service.kit.base import utcnow

log = logging.getLogger("service.audit")

# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_ID = 0x6175646974  # "audit"
_PENDING_LOG = "audit.pending_log"
_DEFERRED = "audit.deferred_appends"


def event_dict(row: AuditEvent) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at,
        "principal": row.principal,
        "key_id": row.key_id,
        "action": row.action,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


async def lock_chain_head(db: AsyncSession) -> None:
    """Serialize appends so two transactions never link to the same head (no fork).

    PostgreSQL: a transaction-scoped advisory lock, released at commit or rollback. SQLite: every
    transaction already begins IMMEDIATE (see kit.db), so there is one writer at a time.
    """
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK_ID)))


async def append(
    db: AsyncSession,
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Link one event to the chain. Inside ``appended_last`` it is queued instead, and its
    ``seq`` and hashes are set when that block ends."""
    row = AuditEvent(
        principal=actor.principal,
        key_id=actor.key_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details or {},
    )
    queue: list[AuditEvent] | None = db.sync_session.info.get(_DEFERRED)
    if queue is not None:
        queue.append(row)
    else:
        await _link(db, [row])
    return row


@asynccontextmanager
async def appended_last(db: AsyncSession) -> AsyncIterator[None]:
    """Work that appends several events and locks rows between them (an import) runs in here.

    On PostgreSQL the chain lock is held from an append until commit, so a row locked after an
    append can deadlock with a request that holds that row and waits for the chain. Queueing the
    appends and linking them when the block ends keeps the order every writer follows: its own
    rows first, the chain last. Nothing is linked when the block raises.
    """
    info = db.sync_session.info
    if _DEFERRED in info:  # nested: the outermost block links
        yield
        return
    queue: list[AuditEvent] = []
    info[_DEFERRED] = queue
    try:
        yield
    finally:
        del info[_DEFERRED]
    await _link(db, queue)


async def _link(db: AsyncSession, rows: list[AuditEvent]) -> None:
    if not rows:
        return
    await lock_chain_head(db)
    head = (
        await db.execute(
            sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    seq, prev_hash = (head.seq + 1, head.hash) if head else (1, GENESIS_HASH)
    for row in rows:
        # Timed under the lock, so times never go backwards along the chain.
        row.seq, row.at, row.prev_hash = seq, utcnow(), prev_hash
        row.hash = event_hash(event_dict(row))
        seq, prev_hash = seq + 1, row.hash
    db.add_all(rows)
    await db.flush()
    db.sync_session.info.setdefault(_PENDING_LOG, []).extend(rows)


@event.listens_for(Session, "after_commit")
def _log_committed_events(session: Session) -> None:
    """One JSON log line per event, and only once it is committed: a rolled-back change leaves no
    line claiming it happened."""
    for row in session.info.pop(_PENDING_LOG, []):
        entry = event_dict(row)
        entry["at"] = row.at.isoformat()
        log.info("audit event %s %s", row.seq, row.action, extra={"audit_event": entry})


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_events(session: Session) -> None:
    session.info.pop(_PENDING_LOG, None)


class UnreadableEvent(Exception):
    """A stored event whose values no longer read as their column types."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"audit event {seq} cannot be read")
        self.seq = seq


async def iter_events(db: AsyncSession, batch: int = 2000) -> AsyncIterator[dict[str, Any]]:
    """All events in order, read in keyset batches so memory stays flat on long chains.

    Raises UnreadableEvent at a row that no longer decodes (SQLite stores whatever is written, so
    someone editing the file can leave, say, an ``at`` that is no time at all).
    """
    after = 0
    while True:
        query = sa.select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
        try:
            rows = (await db.scalars(query.limit(batch))).all()
        except (ValueError, TypeError) as exc:
            if batch > 1:
                batch = 1  # read on one row at a time to find the one that fails
                continue
            seq = await db.scalar(
                sa.select(AuditEvent.seq).where(AuditEvent.seq > after).order_by(AuditEvent.seq)
            )
            raise UnreadableEvent(int(seq or after + 1)) from exc
        if not rows:
            return
        for row in rows:
            yield event_dict(row)
        after = rows[-1].seq
        db.expunge_all()


async def verify(db: AsyncSession) -> Verification:
    check = ChainCheck()
    try:
        async for event_ in iter_events(db):
            if not check.feed(event_):
                break
    except UnreadableEvent as exc:
        check.feed_unreadable(exc.seq)
    return check.result()


async def list_events(
    db: AsyncSession,
    *,
    after_seq: int,
    limit: int,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    principal: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[AuditEvent]:
    query = sa.select(AuditEvent).where(AuditEvent.seq > after_seq)
    filters = {
        AuditEvent.action: action,
        AuditEvent.subject_type: subject_type,
        AuditEvent.subject_id: subject_id,
        AuditEvent.principal: principal,
    }
    for column, value in filters.items():
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    return list((await db.scalars(query.order_by(AuditEvent.seq).limit(limit))).all())
