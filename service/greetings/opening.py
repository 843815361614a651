"""A session's greeting as a delivery: decided once the upstream says session.updated.

Pre-generated greetings resolve their phrase in the session's locale when they are sent, so a
newly approved wording applies to the next call. A conversation key that was already greeted
gets a skipped record instead of a second greeting (also across reconnects and replicas).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.audit import service as audit
from service.deliveries import service as deliveries
from service.deliveries.models import Delivery
from service.deliveries.states import Priority, Status
from service.greetings.models import GreetingPolicy
from service.greetings.service import claim_guard
from service.kit.base import utcnow
from service.kit.errors import ProblemError
from service.phrases.resolution import resolve
from service.phrases.service import sha256_text
from service.sessions.models import LiveSession

if TYPE_CHECKING:
    from service.deliveries.engine import SessionEngine

log = logging.getLogger("service.greetings")


async def greeting_delivery(
    db: AsyncSession, session: LiveSession, policy_name: str, *, max_plays: int
) -> Delivery:
    """The greeting's delivery record: queued to be sent, or ended (skipped, failed) with why."""
    policy = await db.scalar(sa.select(GreetingPolicy).where(GreetingPolicy.name == policy_name))
    interruptible = policy.interruptible if policy is not None else False
    row = _greeting_row(session, policy_name, interruptible, max_plays)
    why: str | None = None
    if policy is None:
        why = f"the greeting policy {policy_name!r} no longer exists"
    elif policy.mode == "generated":
        row.instructions = policy.instructions
    else:
        assert policy.phrase_key is not None
        row.phrase_key = policy.phrase_key
        try:
            resolved = await resolve(db, policy.phrase_key, locale=session.locale)
            row.text = deliveries.rendered(resolved, {})
        except ProblemError as exc:
            why = f"the greeting phrase cannot be spoken: {exc.detail}"
        else:
            row.version, row.locale = resolved.version.number, resolved.locale
            row.sha256 = sha256_text(row.text)
    db.add(row)
    await db.flush()
    if why is not None:
        row.status, row.failure_reason, row.ended_at = Status.FAILED.value, why, utcnow()
    elif session.conversation_key is not None and not await claim_guard(
        db, session.conversation_key, session_id=session.id, delivery_id=row.id
    ):
        row.status, row.ended_at = Status.SKIPPED.value, utcnow()
        row.failure_reason = "this conversation was already greeted (same conversation key)"
    await db.flush()
    await _audited(db, row)
    return row


async def failed_greeting(
    db: AsyncSession, session: LiveSession, policy_name: str, why: str
) -> Delivery:
    """The record of a greeting that could not even be prepared."""
    row = _greeting_row(session, policy_name, False, 1)
    row.status, row.failure_reason, row.ended_at = Status.FAILED.value, why, utcnow()
    db.add(row)
    await db.flush()
    await _audited(db, row)
    return row


def _greeting_row(
    session: LiveSession, policy_name: str, interruptible: bool, max_plays: int
) -> Delivery:
    return Delivery(
        id=deliveries.new_id(),
        session_id=session.id,
        kind="greeting",
        greeting_policy=policy_name,
        variables={},
        status=Status.QUEUED.value,
        priority=Priority.APPEND.value,
        interruptible=interruptible,
        max_attempts=1 if interruptible else max_plays,
        requested_by="service",
        requested_at=utcnow(),
        attempt_rows=[],
    )


async def _audited(db: AsyncSession, row: Delivery) -> None:
    await audit.append(
        db,
        deliveries.SERVICE,
        f"delivery.{row.status}",
        "delivery",
        row.id,
        deliveries.queued_details(row),
    )


async def greet(
    engine: SessionEngine,
    maker: async_sessionmaker[AsyncSession],
    session: LiveSession,
    policy: str,
    max_plays: int,
) -> None:
    """Prepare the session's greeting and hand it to its engine; whatever happens, the engine is
    told (so the session never stays held) and a greeting that could not be prepared is recorded."""
    tracked = None
    try:
        async with maker.begin() as db:
            row = await greeting_delivery(db, session, policy, max_plays=max_plays)
        if row.status == Status.QUEUED.value:
            tracked = deliveries.tracked_of(row, greeting=True)
    except Exception as exc:  # the call goes on ungreeted, but never silently
        log.exception("session %s: the greeting could not be prepared", session.id)
        with contextlib.suppress(Exception):
            async with maker.begin() as db:
                why = f"the greeting could not be prepared ({type(exc).__name__})"
                await failed_greeting(db, session, policy, why)
    finally:  # whatever happened, the session must not stay held
        await engine.greeting_queued(tracked)
