"""Appending to and reading the chain. Callers pass their open session: the audit event is written
in the same transaction as the change it records, or not at all."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.audit import checkpoints
from service.audit.chain import GENESIS_HASH, Verification, event_hash
from service.audit.checkpoints import Checkpoint, SignedChainCheck
from service.audit.keys import Signer
from service.audit.models import AuditCheckpoint, AuditEvent
from service.kit.actor import Actor
from service.kit.base import utcnow

log = logging.getLogger("service.audit")

# Any constant works; it only has to be the same for every writer of the chain.
_CHAIN_LOCK_ID = 0x6175646974  # "audit"
_PENDING_LOG = "audit.pending_log"
_DEFERRED = "audit.deferred_appends"

_TABLE = cast(sa.Table, AuditEvent.__table__)
_HEAD = sa.select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = sa.insert(_TABLE)
_BATCH = (
    sa.select(*_TABLE.c)
    .where(_TABLE.c.seq > sa.bindparam("after"))
    .order_by(_TABLE.c.seq)
    .limit(sa.bindparam("batch"))
)
_COLUMNS = [c.name for c in _TABLE.c]
# One round trip instead of two (read the head, then insert) when the head is the one this process
# linked last: the new event is inserted only if the head, read by the same statement under the
# chain lock, is still the one it links to; otherwise nothing is inserted and the head is read.
_HEAD_NOW = _HEAD.subquery("head")
_INSERT_AFTER_HEAD = sa.insert(_TABLE).from_select(
    _COLUMNS,
    sa.select(*(sa.bindparam(c.name, type_=c.type) for c in _TABLE.c)).where(
        sa.exists().where(
            _HEAD_NOW.c.seq == sa.bindparam("head_seq"),
            _HEAD_NOW.c.hash == sa.bindparam("head_hash"),
        )
    ),
)
# The head each database had after this process's last append, by the database's address (two
# engines on one database share it). Only a guess, never trusted: the guarded insert above checks
# it, and a stale one costs one read.
_last_linked: dict[tuple[Any, ...], tuple[int, str]] = {}


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
    transaction that may write begins IMMEDIATE (see kit.db), so there is one writer at a time;
    here it is made to begin, so that the head read next is the one this writer links to.
    """
    await db.run_sync(_lock_chain_head)


def _lock_chain_head(db: Session) -> None:
    if db.get_bind().dialect.name == "postgresql":
        db.execute(sa.select(sa.func.pg_advisory_xact_lock(_CHAIN_LOCK_ID)))
    else:
        db.connection()  # the transaction has begun: this session is the one writer


def link_now(db: Session, rows: list[AuditEvent]) -> None:
    """Link ``rows`` (``new_event``) to the chain in ``db``'s transaction, after its own rows
    (see ``appended_last``): the synchronous core of every append, which also runs where a
    whole transaction is one synchronous function (``kit.db.Transactions``)."""
    if not rows:
        return
    # The caller's own rows first (see appended_last), and not while holding the chain.
    db.flush()
    _lock_chain_head(db)
    url = db.get_bind().engine.url
    database = (url.get_backend_name(), url.host, url.port, url.database)
    head = _last_linked.get(database)
    if head is None or not _insert(db, _linked(rows, head), guarded=True):
        row = db.execute(_HEAD).first()
        head = (row.seq, row.hash) if row else (0, GENESIS_HASH)
        _insert(db, _linked(rows, head), guarded=False)
    _last_linked[database] = (rows[-1].seq, rows[-1].hash)
    db.info.setdefault(_PENDING_LOG, []).extend(rows)


def new_event(
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: str,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """An event to link (``append``, or ``link_now`` in a synchronous transaction)."""
    return AuditEvent(
        principal=actor.principal,
        key_id=actor.key_id,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details or {},
    )


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
    row = new_event(actor, action, subject_type, subject_id, details)
    queue: list[AuditEvent] | None = db.sync_session.info.get(_DEFERRED)
    if queue is not None:
        queue.append(row)
    else:
        await db.run_sync(link_now, [row])
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
    if queue:
        await db.run_sync(link_now, queue)


def _linked(rows: list[AuditEvent], head: tuple[int, str]) -> list[dict[str, Any]]:
    """Number, time and hash ``rows`` as the events after ``head``; their values to insert."""
    seq, prev_hash = head[0] + 1, head[1]
    values = []
    for row in rows:
        # Timed under the lock, so times never go backwards along the chain.
        row.seq, row.at, row.prev_hash = seq, utcnow(), prev_hash
        value = event_dict(row)
        row.hash = value["hash"] = event_hash(value)
        values.append(value)
        seq, prev_hash = seq + 1, row.hash
    return values


def _insert(db: Session, values: list[dict[str, Any]], *, guarded: bool) -> bool:
    """Insert the linked events. ``guarded``: the first one only if the head is still the one it
    links to (``head_seq``, ``head_hash``), checked by the database in the same statement, under
    the chain lock; False, and nothing inserted, when it is not."""
    if guarded:
        first = values[0]
        params = {**first, "head_seq": first["seq"] - 1, "head_hash": first["prev_hash"]}
        result = cast(sa.CursorResult[Any], db.execute(_INSERT_AFTER_HEAD, params))
        if result.rowcount != 1:
            return False
        values = values[1:]
    if values:
        db.execute(_INSERT, values)
    return True


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


async def iter_events(db: AsyncSession, batch: int = 1000) -> AsyncIterator[Mapping[str, Any]]:
    """All events in order, read in keyset batches so memory stays flat on long chains; each as
    its columns by name, typed as the model types them (plain rows: no ORM objects to build).
    Batches of 2000 verified 10% slower than 1000 (bench/audit.py): the more rows alive at once,
    the more the cyclic garbage collector's passes cost.

    Raises UnreadableEvent at a row that no longer decodes (SQLite stores whatever is written, so
    someone editing the file can leave, say, an ``at`` that is no time at all).
    """
    after = 0
    while True:
        try:
            result = await db.execute(_BATCH, {"after": after, "batch": batch})
            rows = cast(Sequence[Mapping[str, Any]], result.mappings().all())
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
            yield row
        after = rows[-1]["seq"]


async def verify(
    db: AsyncSession, trusted: Mapping[str, Ed25519PublicKey] | None = None
) -> Verification:
    """The chain, and with ``trusted`` keys (by key id) every checkpoint too: signed by one of
    them and matching the chain (see service.audit.checkpoints)."""
    problem = None
    stored: list[Checkpoint] = []
    if trusted:
        # Read before the events: a checkpoint made meanwhile could vouch for events not read.
        try:
            stored = await stored_checkpoints(db)
        except (ValueError, TypeError):
            problem = "a stored checkpoint can no longer be read as its types: it was altered"
    check = SignedChainCheck(stored, trusted or {})
    if problem is not None:
        check.fail_unsigned(problem)
        return check.result()
    try:
        async for event_ in iter_events(db):
            if not check.feed(event_):
                break
    except UnreadableEvent as exc:
        check.feed_unreadable(exc.seq)
    return check.result()


# --- checkpoints ----------------------------------------------------------------------------------


async def chain_head(db: AsyncSession) -> tuple[int, str]:
    """The newest committed event's seq and hash; (0, the genesis hash) for an empty chain."""
    row = (await db.execute(_HEAD)).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


async def create_checkpoint(db: AsyncSession, signer: Signer) -> AuditCheckpoint:
    """Sign the chain head as it is now. No chain lock: the head read is committed, and what is
    appended after it is for the next checkpoint."""
    seq, head_hash = await chain_head(db)
    signed = checkpoints.sign(signer, seq, head_hash, utcnow())
    row = AuditCheckpoint(
        seq=signed.seq,
        head_hash=signed.head_hash,
        signed_at=signed.signed_at,
        key_id=signed.key_id,
        signature=signed.signature,
    )
    db.add(row)
    await db.flush()
    return row


async def checkpoint_if_moved(db: AsyncSession, signer: Signer) -> AuditCheckpoint | None:
    """A checkpoint unless the chain is empty or its head is already signed by this key."""
    seq, head_hash = await chain_head(db)
    if seq == 0:
        return None
    latest = (
        await db.execute(
            sa.select(AuditCheckpoint.seq, AuditCheckpoint.head_hash)
            .where(AuditCheckpoint.key_id == signer.key_id)
            .order_by(AuditCheckpoint.id.desc())
            .limit(1)
        )
    ).first()
    if latest is not None and (latest.seq, latest.head_hash) == (seq, head_hash):
        return None
    return await create_checkpoint(db, signer)


async def list_checkpoints(db: AsyncSession, *, after_id: int, limit: int) -> list[AuditCheckpoint]:
    query = sa.select(AuditCheckpoint).where(AuditCheckpoint.id > after_id)
    return list((await db.scalars(query.order_by(AuditCheckpoint.id).limit(limit))).all())


_CHECKPOINT_COLUMNS = [getattr(AuditCheckpoint, name) for name in checkpoints.FIELDS]


async def stored_checkpoints(db: AsyncSession) -> list[Checkpoint]:
    """Every checkpoint, oldest first (a few hundred bytes each, one per interval at most)."""
    result = await db.execute(sa.select(*_CHECKPOINT_COLUMNS).order_by(AuditCheckpoint.id))
    return [Checkpoint.from_mapping(dict(row)) for row in result.mappings()]


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
