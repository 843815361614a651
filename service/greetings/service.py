"""Greeting policies (how a session opens) and the guard that lets a conversation be greeted once.

No HTTP here. Every change appends its audit event in the caller's transaction; functions
``flush()`` and never commit.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit import service as audit
from service.deliveries.models import Delivery
from service.greetings import errors
from service.greetings.models import GreetingGuard, GreetingPolicy
from service.greetings.schemas import NO_GREETING, GreetingPolicyCreate, GreetingPolicyUpdate
from service.kit.actor import Actor
from service.kit.base import utcnow
from service.phrases.models import Phrase

# A greeting that ended in one of these before any audio reached the caller was never heard.
UNHEARD_ENDS = ("failed", "expired", "skipped")
_FIELDS = ("mode", "phrase_key", "instructions", "interruptible", "is_default")


def policy_fields(policy: GreetingPolicy) -> dict[str, Any]:
    return {"name": policy.name, **{name: getattr(policy, name) for name in _FIELDS}}


async def _record(db: AsyncSession, actor: Actor, change: str, fields: dict[str, Any]) -> None:
    await audit.append(
        db, actor, f"greeting_policy.{change}", "greeting_policy", fields["name"], fields
    )


# --- policies ------------------------------------------------------------------------------------


async def get_policy(db: AsyncSession, name: str, *, lock: bool = False) -> GreetingPolicy:
    query = sa.select(GreetingPolicy).where(GreetingPolicy.name == name)
    if lock:
        query = query.with_for_update()
    policy = await db.scalar(query)
    if policy is None:
        raise errors.GreetingPolicyNotFound(f"no greeting policy named {name!r}")
    return policy


async def list_policies(db: AsyncSession) -> list[GreetingPolicy]:
    return list((await db.scalars(sa.select(GreetingPolicy).order_by(GreetingPolicy.name))).all())


async def _serialize_changes(db: AsyncSession) -> None:
    """One policy change at a time, through the lock of the audit chain every change appends to:
    two requests making different policies the default at once must not leave two defaults
    (SQLite's IMMEDIATE transactions already serialize; this is for PostgreSQL). Taken before any
    policy row is locked, so it cannot deadlock with another policy change."""
    await audit.lock_chain_head(db)


async def _check_phrase(db: AsyncSession, body: GreetingPolicyUpdate) -> None:
    # Existence only: the approved version in force is resolved each time the greeting is sent.
    key = body.phrase_key
    if key is not None and await db.scalar(sa.select(Phrase.id).where(Phrase.key == key)) is None:
        raise errors.UnknownGreetingPhrase(
            f"phrase_key {key!r} names no phrase: create the phrase first", phrase_key=key
        )


async def _clear_other_defaults(db: AsyncSession, actor: Actor, keep: str) -> None:
    others = await db.scalars(
        sa.select(GreetingPolicy)
        .where(GreetingPolicy.is_default.is_(True), GreetingPolicy.name != keep)
        .with_for_update()
    )
    for other in others.all():
        other.is_default = False
        other.updated_at, other.updated_by = utcnow(), actor.principal
        await _record(db, actor, "updated", policy_fields(other))
    await db.flush()


def _apply(policy: GreetingPolicy, body: GreetingPolicyUpdate) -> None:
    for name in _FIELDS:
        value = getattr(body, name)
        setattr(policy, name, value.value if name == "mode" else value)


async def create_policy(
    db: AsyncSession, actor: Actor, body: GreetingPolicyCreate
) -> GreetingPolicy:
    await _serialize_changes(db)
    exists = f"a greeting policy named {body.name!r} already exists"
    if await db.scalar(sa.select(GreetingPolicy.id).where(GreetingPolicy.name == body.name)):
        raise errors.GreetingPolicyExists(exists)
    await _check_phrase(db, body)
    if body.is_default:
        await _clear_other_defaults(db, actor, keep=body.name)
    now = utcnow()
    policy = GreetingPolicy(
        name=body.name,
        created_at=now,
        created_by=actor.principal,
        updated_at=now,
        updated_by=actor.principal,
    )
    _apply(policy, body)
    db.add(policy)
    try:
        await db.flush()
    except IntegrityError as exc:  # a concurrent request created the same name first
        raise errors.GreetingPolicyExists(exists) from exc
    await _record(db, actor, "created", policy_fields(policy))
    return policy


async def replace_policy(
    db: AsyncSession, actor: Actor, name: str, body: GreetingPolicyUpdate
) -> GreetingPolicy:
    await _serialize_changes(db)
    policy = await get_policy(db, name, lock=True)
    await _check_phrase(db, body)
    before = policy_fields(policy)
    _apply(policy, body)
    if policy_fields(policy) == before:
        return policy  # nothing changed: no update, no audit event
    if policy.is_default:
        await _clear_other_defaults(db, actor, keep=name)
    policy.updated_at, policy.updated_by = utcnow(), actor.principal
    await db.flush()
    await _record(db, actor, "updated", policy_fields(policy))
    return policy


async def delete_policy(db: AsyncSession, actor: Actor, name: str) -> None:
    """Sessions and deliveries keep the name they recorded: they hold no reference to the row."""
    await _serialize_changes(db)
    policy = await get_policy(db, name, lock=True)
    fields = policy_fields(policy)
    await db.delete(policy)
    await db.flush()
    await _record(db, actor, "deleted", fields)


# --- what the relay asks -------------------------------------------------------------------------


async def policy_for_session(db: AsyncSession, requested: str | None) -> GreetingPolicy | None:
    """requested None or "" -> the default policy (is_default) if any, else None;
    "none" (any case) -> None; a name -> that policy, or raise GreetingPolicyNotFound."""
    if not requested:
        return await db.scalar(
            sa.select(GreetingPolicy)
            .where(GreetingPolicy.is_default.is_(True))
            .order_by(GreetingPolicy.name)
            .limit(1)
        )
    if requested.lower() == NO_GREETING:
        return None
    return await get_policy(db, requested)


async def claim_guard(
    db: AsyncSession, conversation_key: str, *, session_id: str, delivery_id: str
) -> bool:
    """True when this session may greet this conversation: inserts a GreetingGuard row; if a row
    already exists, take it over (update session_id, delivery_id, claimed_at) only when the
    delivery it names ended unheard: Delivery.status in ("failed", "expired", "skipped") and
    Delivery.first_audio_at IS NULL, or the delivery row no longer exists; otherwise False.

    Safe under concurrency: of two sessions racing for one key exactly one gets True. Flushes,
    never commits. Write (and flush) the delivery row in the same transaction as the claim: a
    committed guard whose delivery does not exist reads as abandoned and can be taken over.
    """
    if await _insert_guard(db, conversation_key, session_id, delivery_id):
        return True
    held = (
        await db.execute(
            sa.select(GreetingGuard.session_id, GreetingGuard.delivery_id).where(
                GreetingGuard.conversation_key == conversation_key
            )
        )
    ).first()
    if held is None:  # guards are never deleted today; if one was, the key is free again
        return await _insert_guard(db, conversation_key, session_id, delivery_id)
    if (held.session_id, held.delivery_id) == (session_id, delivery_id):
        return True  # claimed before by this very greeting
    if not await _ended_unheard(db, held.delivery_id):
        return False
    # Compare and swap: the WHERE names the delivery we judged, so of two sessions taking over at
    # once the second matches nothing (on PostgreSQL it waits for the first's row lock, then
    # re-reads the row and finds the first's delivery in it).
    taken = await db.scalar(
        sa.update(GreetingGuard)
        .where(
            GreetingGuard.conversation_key == conversation_key,
            GreetingGuard.delivery_id == held.delivery_id,
        )
        .values(session_id=session_id, delivery_id=delivery_id, claimed_at=utcnow())
        .returning(GreetingGuard.conversation_key)
    )
    return taken is not None


async def _insert_guard(
    db: AsyncSession, conversation_key: str, session_id: str, delivery_id: str
) -> bool:
    """Insert the guard row; False when the key is taken. On PostgreSQL an insert racing an
    uncommitted one waits for it to commit (then fails here) or roll back (then succeeds)."""
    try:
        async with db.begin_nested():  # a failed INSERT must not abort the caller's transaction
            await db.execute(
                sa.insert(GreetingGuard).values(
                    conversation_key=conversation_key,
                    session_id=session_id,
                    delivery_id=delivery_id,
                    claimed_at=utcnow(),
                )
            )
    except IntegrityError:
        return False
    return True


async def _ended_unheard(db: AsyncSession, delivery_id: str) -> bool:
    delivery = (
        await db.execute(
            sa.select(Delivery.status, Delivery.first_audio_at).where(Delivery.id == delivery_id)
        )
    ).first()
    if delivery is None:
        return True  # gone: nothing proves the caller heard it
    return delivery.status in UNHEARD_ENDS and delivery.first_audio_at is None
