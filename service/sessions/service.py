"""The session registry's rules: open, identify, end, list. No HTTP, no sockets."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.access.roles import Role
from service.access.service import Caller
from service.audit import service as audit
from service.deliveries.models import Delivery
from service.deliveries.states import FINAL, Status
from service.kit.actor import Actor
from service.kit.base import time_ordered_id, utcnow
from service.kit.errors import Forbidden
from service.sessions.errors import SessionNotFound
from service.sessions.models import LiveSession
from service.sessions.schemas import Kind, State


def check_speaker(caller: Caller, session: LiveSession) -> None:
    """Only the agent that opened a session (or an admin) may speak into it or hold it."""
    if caller.principal != session.principal and Role.ADMIN not in caller.roles:
        raise Forbidden(
            f"session {session.id} belongs to {session.principal!r}; only that agent (or an "
            "admin) may speak into it"
        )


def unchanging(session: LiveSession) -> LiveSession:
    """What a delivery request needs of a session's row, as a copy of its own: no database
    session can expire it (a rollback would, the row)."""
    return LiveSession(
        id=session.id,
        principal=session.principal,
        locale=session.locale,
        state=session.state,
        replica=session.replica,
        end_reason=session.end_reason,
    )


def new_id() -> str:
    return time_ordered_id("ses_")


async def open_session(
    db: AsyncSession,
    actor: Actor,
    *,
    kind: Kind,
    conversation_key: str | None,
    locale: str | None,
    model: str | None,
    greeting_policy: str | None,
    replica: str | None,
) -> LiveSession:
    row = LiveSession(
        id=new_id(),
        kind=kind.value,
        state=State.LIVE.value,
        conversation_key=conversation_key,
        locale=locale,
        principal=actor.principal,
        key_id=actor.key_id,
        model=model,
        greeting_policy=greeting_policy,
        replica=replica,
        started_at=utcnow(),
    )
    db.add(row)
    await db.flush()
    details = {
        "kind": row.kind,
        "conversation_key": conversation_key,
        "locale": locale,
        "model": model,
        "greeting_policy": greeting_policy,
    }
    await audit.append(db, actor, "session.started", "session", row.id, details)
    return row


def note_voicelive_id(db: Session, session_id: str, voicelive_id: str) -> None:
    """Synchronous: a job of the delivery recorder (deliveries/recorder.py)."""
    db.execute(
        sa.update(LiveSession)
        .where(LiveSession.id == session_id)
        .values(voicelive_session_id=voicelive_id)
    )


async def end_session(db: AsyncSession, session_id: str, reason: str) -> None:
    row = await db.get(LiveSession, session_id, with_for_update=True)
    if row is None or row.state == State.CLOSED.value:
        return
    row.state, row.ended_at, row.end_reason = State.CLOSED.value, utcnow(), reason
    await db.flush()
    await audit.append(db, Actor("service"), "session.ended", "session", row.id, {"reason": reason})


async def close_abandoned(db: AsyncSession, replica: str | None, reason: str) -> int:
    """Sessions a previous run of this replica left live can no longer have a socket: end them,
    and end every delivery of theirs that was not finished, each with the reason (none vanishes
    silently)."""
    same_replica = (
        LiveSession.replica.is_(None) if replica is None else LiveSession.replica == replica
    )
    rows = (
        await db.scalars(
            sa.select(LiveSession).where(LiveSession.state == State.LIVE.value, same_replica)
        )
    ).all()
    for session in rows:
        await end_unfinished(db, session.id, reason)
        await end_session(db, session.id, reason)
    return len(rows)


async def end_unfinished(db: AsyncSession, session_id: str, reason: str) -> int:
    """Give every delivery of an ended session that has no final state one, with the reason:
    waiting ones expired, the others failed. Normally there are none (the engine records each
    ending); this catches a record that could not be written."""
    unfinished = (
        await db.scalars(
            sa.select(Delivery).where(
                Delivery.session_id == session_id,
                Delivery.status.not_in([s.value for s in FINAL]),
            )
        )
    ).all()
    for delivery in unfinished:
        queued = delivery.status == Status.QUEUED.value
        delivery.status = (Status.EXPIRED if queued else Status.FAILED).value
        delivery.failure_reason = reason
        delivery.ended_at = utcnow()
        details = {"session_id": session_id, "status": delivery.status, "reason": reason}
        await audit.append(
            db, Actor("service"), f"delivery.{delivery.status}", "delivery", delivery.id, details
        )
    return len(unfinished)


async def find(db: AsyncSession, any_id: str) -> LiveSession:
    """By the service's id or by the Voice Live session id the client saw."""
    row = await db.get(LiveSession, any_id)
    if row is None:
        row = (
            await db.scalars(
                sa.select(LiveSession)
                .where(LiveSession.voicelive_session_id == any_id)
                .order_by(LiveSession.started_at.desc())
                .limit(1)
            )
        ).first()
    if row is None:
        raise SessionNotFound(f"no session {any_id!r} (by service id or Voice Live session id)")
    return row


async def list_sessions(
    db: AsyncSession,
    *,
    state: State | None,
    conversation_key: str | None,
    principal: str | None,
    after: str | None,
    limit: int,
) -> list[LiveSession]:
    query = sa.select(LiveSession)
    if state is not None:
        query = query.where(LiveSession.state == state.value)
    if conversation_key is not None:
        query = query.where(LiveSession.conversation_key == conversation_key)
    if principal is not None:
        query = query.where(LiveSession.principal == principal.lower())
    if after is not None:
        query = query.where(LiveSession.id < after)
    # Newest first; ids sort by creation time, so the id is also the keyset.
    return list((await db.scalars(query.order_by(LiveSession.id.desc()).limit(limit))).all())
