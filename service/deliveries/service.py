"""Delivery records: created from a request (resolved, rendered, idempotent) and brought up to date
from the engine's records. No HTTP here."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, selectinload

from service.audit import service as audit
from service.deliveries.errors import DeliveryNotFound, IdempotencyKeyReused, VariablesInvalid
from service.deliveries.models import Delivery, DeliveryAttempt
from service.deliveries.schemas import DeliveryCreate
from service.deliveries.states import Priority, Status
from service.deliveries.tracking import Attempt, Record, Tracked
from service.kit.actor import Actor
from service.kit.base import time_ordered_id, utcnow
from service.phrases.resolution import PhraseSnapshot, Resolved, resolve_in
from service.phrases.service import sha256_text
from service.phrases.variables import Variable, render
from service.sessions.models import LiveSession

SERVICE = Actor("service")  # transitions the service observed on the wire, not a person's act
# The columns a transition may change (Tracked.snapshot() carries each of them).
RECORDED = (
    "status",
    "attempts",
    "response_id",
    "item_id",
    "transcript",
    "transcript_verified",
    "played_ms",
    "failure_reason",
    "sent_at",
    "started_at",
    "first_audio_at",
    "ended_at",
)


def new_id() -> str:
    return time_ordered_id("dlv_")


def request_hash(session_id: str, body: DeliveryCreate) -> str:
    """What makes two requests 'the same' for Idempotency-Key: the session and what is to be
    spoken (how long the caller waits for the outcome is not part of it)."""
    canonical = json.dumps(
        {"session": session_id, **body.model_dump(mode="json", exclude={"wait"})}, sort_keys=True
    ).encode()
    return hashlib.sha256(canonical).hexdigest()


def delivery_query() -> sa.Select[Delivery]:
    return sa.select(Delivery).options(selectinload(Delivery.attempt_rows))


async def get(db: AsyncSession, delivery_id: str) -> Delivery:
    row = (await db.scalars(delivery_query().where(Delivery.id == delivery_id))).first()
    if row is None:
        raise DeliveryNotFound(f"no delivery {delivery_id!r}")
    return row


async def list_for_session(
    db: AsyncSession, session_id: str, *, after: str | None, limit: int
) -> list[Delivery]:
    query = delivery_query().where(Delivery.session_id == session_id)
    if after is not None:
        query = query.where(Delivery.id > after)
    return list((await db.scalars(query.order_by(Delivery.id).limit(limit))).all())


async def earlier_request(
    db: AsyncSession, principal: str, key: str | None, digest: str
) -> Delivery | None:
    """The delivery an earlier request with this Idempotency-Key made (None: none, or no key);
    422 when that request was a different one."""
    if key is None:
        return None
    query = delivery_query().where(
        Delivery.requested_by == principal, Delivery.idempotency_key == key
    )
    existing = (await db.scalars(query)).first()
    if existing is not None and existing.request_hash != digest:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request; "
            f"it names delivery {existing.id}",
            delivery_id=existing.id,
        )
    return existing


def rendered(resolved: Resolved, values: dict[str, str]) -> str:
    variables = [Variable(**v) for v in resolved.version.variables]
    try:
        return render(resolved.text, variables, values)
    except ValueError as exc:
        raise VariablesInvalid(str(exc)) from exc


def prepare(
    actor: Actor,
    session: LiveSession,
    body: DeliveryCreate,
    *,
    idempotency_key: str | None,
    digest: str,
    max_plays: int,
    phrase: PhraseSnapshot,
) -> dict[str, Any]:
    """The columns of the queued delivery a request asks for (to insert; see intake.py).

    ``phrase``: the phrase as of no earlier than the request's arrival (the library cache)."""
    resolved = resolve_in(phrase, locale=body.locale or session.locale, version_number=body.version)
    text = rendered(resolved, body.variables)
    return {
        "id": new_id(),
        "session_id": session.id,
        "kind": "phrase",
        "greeting_policy": None,
        "phrase_key": resolved.phrase.key,
        "version": resolved.version.number,
        "locale": resolved.locale,
        "text": text,
        "instructions": None,
        "sha256": sha256_text(text),
        "variables": body.variables,
        "status": Status.QUEUED.value,
        "priority": body.priority.value,
        "interruptible": body.interruptible,
        "attempts": 0,
        "max_attempts": 1 if body.interruptible else max_plays,
        "requested_by": actor.principal,
        "requested_key_id": actor.key_id,
        "idempotency_key": idempotency_key,
        "request_hash": digest,
        "requested_at": utcnow(),
    }


def queued_details(row: Delivery | Mapping[str, Any]) -> dict[str, Any]:
    """The ``delivery.queued`` event's details, of a row or of its columns (``prepare``)."""
    names = (
        "session_id", "kind", "phrase_key", "version", "locale", "sha256", "priority",
        "interruptible", "status",
    )  # fmt: skip
    if isinstance(row, Mapping):
        details = {name: row[name] for name in names}
        details["reason"] = row.get("failure_reason")
    else:
        details = {name: getattr(row, name) for name in names}
        details["reason"] = row.failure_reason
    return details


def tracked_of(row: Delivery | Mapping[str, Any], *, greeting: bool = False) -> Tracked:
    """What a session's engine tracks of a delivery: of its row, or of its columns (``prepare``)."""
    get = row.__getitem__ if isinstance(row, Mapping) else row.__getattribute__
    return Tracked(
        id=get("id"),
        text=get("text"),
        instructions=get("instructions"),
        priority=Priority(get("priority")),
        interruptible=get("interruptible"),
        max_plays=get("max_attempts"),
        greeting=greeting,
    )


def persist(db: Session, records: Sequence[tuple[str, Record]]) -> None:
    """Bring the rows up to date with transitions (``(session id, record)``, in the order they
    happened) and add each to the audit chain, in that order.

    A batch of records is a few statements, whatever its size: every record carries the whole
    state of its delivery and attempt, so each row is written once, with the state of its last
    record. Records of a delivery that has no row are left out. Synchronous: the recorder runs
    it as one trip to the database (``kit.db.Transactions``)."""
    if not records:
        return
    ids = {record.delivery_id for _, record in records}
    # Its own rows locked first, the audit chain last (see audit.appended_last).
    query = sa.select(Delivery.id).where(Delivery.id.in_(ids)).with_for_update()
    found = set(db.scalars(query).all())
    rows: dict[str, dict[str, Any]] = {}
    attempts: dict[tuple[str, int], dict[str, Any]] = {}
    for _, record in records:
        if record.delivery_id not in found:
            continue
        rows[record.delivery_id] = {"key": record.delivery_id} | {
            name: record.fields[name] for name in RECORDED
        }
        if record.attempt is not None:
            key = (record.delivery_id, record.attempt["number"])
            attempts[key] = {"delivery_id": record.delivery_id, **record.attempt}
    if rows:
        db.execute(_UPDATE_DELIVERY, list(rows.values()))
    if attempts:
        db.execute(_upsert_attempts(db.get_bind().dialect.name), list(attempts.values()))
    events = []
    for session_id, record in records:
        if record.delivery_id not in found:
            continue
        fields, attempt = record.fields, record.attempt
        details = {
            "session_id": session_id,
            "status": fields["status"],
            "attempt": attempt["number"] if attempt else None,
            "response_id": fields["response_id"],
            "played_ms": fields["played_ms"],
            "transcript_verified": fields["transcript_verified"],
            "reason": fields.get("reason"),
        }
        subject = record.delivery_id
        events.append(audit.new_event(SERVICE, record.action, "delivery", subject, details))
    audit.link_now(db, events)  # the chain last (see audit.appended_last)


_deliveries = cast(sa.Table, Delivery.__table__)
_UPDATE_DELIVERY = (
    sa.update(_deliveries)
    .where(_deliveries.c.id == sa.bindparam("key"))
    .values({name: sa.bindparam(name) for name in RECORDED})
)
_ATTEMPT_FIELDS = [f.name for f in dataclasses.fields(Attempt)]


@functools.cache
def _upsert_attempts(dialect: str) -> Any:
    """Insert an attempt, or bring the stored one up to date (same delivery and number). Built
    once per dialect: building it costs more than running it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(cast(sa.Table, DeliveryAttempt.__table__))
    changed = {name: statement.excluded[name] for name in _ATTEMPT_FIELDS if name != "number"}
    return statement.on_conflict_do_update(index_elements=["delivery_id", "number"], set_=changed)
