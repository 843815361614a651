from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from service.access.dependencies import Agent, AnyRole
from service.access.roles import Role
from service.deliveries import service
from service.deliveries.errors import QueueFull, SessionElsewhere, SessionNotLive
from service.deliveries.models import Delivery
from service.deliveries.schemas import AttemptRead, DeliveryCreate, DeliveryList, DeliveryRead
from service.deliveries.states import FINAL, Priority, Status
from service.kit.db import DB
from service.kit.errors import Forbidden
from service.kit.pagination import Cursor, Limit, decode_cursor, encode_cursor
from service.sessions import service as sessions
from service.sessions.registry import LiveSessions
from service.sessions.schemas import State
from service.settings import Settings

router = APIRouter(tags=["deliveries"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key and body: the same delivery; another body: 422.",
    ),
]


def delivery_read(row: Delivery) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        session_id=row.session_id,
        kind=row.kind,
        greeting_policy=row.greeting_policy,
        phrase_key=row.phrase_key,
        version=row.version,
        locale=row.locale,
        text=row.text,
        instructions=row.instructions,
        sha256=row.sha256,
        status=Status(row.status),
        priority=Priority(row.priority),
        interruptible=row.interruptible,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        response_id=row.response_id,
        item_id=row.item_id,
        transcript=row.transcript,
        transcript_verified=row.transcript_verified,
        played_ms=row.played_ms,
        failure_reason=row.failure_reason,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        sent_at=row.sent_at,
        started_at=row.started_at,
        first_audio_at=row.first_audio_at,
        ended_at=row.ended_at,
        attempt_log=[AttemptRead.model_validate(a, from_attributes=True) for a in row.attempt_rows],
    )


@router.post(
    "/v1/sessions/{session_id}/deliveries",
    status_code=201,
    operation_id="create_delivery",
    responses={200: {"model": DeliveryRead, "description": "Ended within `wait` seconds."}},
)
async def create_delivery(
    session_id: str,
    body: DeliveryCreate,
    caller: Agent,
    db: DB,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> DeliveryRead:
    """Speak an approved phrase into a live session, word for word."""
    settings: Settings = request.app.state.settings
    live: LiveSessions = request.app.state.live
    session = await sessions.find(db, session_id)
    if caller.principal != session.principal and Role.ADMIN not in caller.roles:
        raise Forbidden(
            f"session {session.id} belongs to {session.principal!r}; only that agent (or an "
            "admin) may speak into it"
        )
    engine = live.get(session.id)
    digest = service.request_hash(session.id, body)
    existing = await service.earlier_request(db, caller.principal, idempotency_key, digest)
    if existing is None:
        if session.state != State.LIVE.value:
            raise SessionNotLive(f"session {session.id} ended: {session.end_reason}")
        if engine is None:
            raise SessionElsewhere(
                f"session {session.id} is live on another replica ({session.replica or 'unknown'})"
                "; send the request there"
            )
        if engine.queued() >= settings.delivery_queue_limit:
            raise QueueFull(
                f"{engine.queued()} deliveries already wait in session {session.id}",
                headers={"Retry-After": "1"},
            )
        row, created = await service.create(
            db,
            caller.actor,
            session,
            body,
            idempotency_key=idempotency_key,
            digest=digest,
            max_plays=settings.delivery_max_plays,
        )
        await db.commit()  # the record exists before the words go out
        if created:
            await engine.submit(service.tracked_of(row))
        else:
            existing = row
    else:
        row = existing
    # Never wait inside a transaction: on SQLite it would hold the one write lock the engine's
    # recorders need, on PostgreSQL a pooled connection.
    await db.commit()
    if existing is not None:
        response.headers["Idempotent-Replayed"] = "true"
    if body.wait and engine is not None and Status(row.status) not in FINAL:
        finished = engine.finished_signal(row.id)
        try:
            async with asyncio.timeout(body.wait):
                await finished.wait()
        except TimeoutError:
            pass
    async with request.app.state.read_sessionmaker() as fresh:
        row = await service.get(fresh, row.id)
    if body.wait is not None and Status(row.status) in FINAL:
        response.status_code = 200
    return delivery_read(row)


@router.get("/v1/deliveries/{delivery_id}", operation_id="get_delivery")
async def get_delivery(delivery_id: str, caller: AnyRole, db: DB) -> DeliveryRead:
    return delivery_read(await service.get(db, delivery_id))


@router.get("/v1/sessions/{session_id}/deliveries", operation_id="list_session_deliveries")
async def list_session_deliveries(
    session_id: str, caller: AnyRole, db: DB, limit: Limit = 50, cursor: Cursor = None
) -> DeliveryList:
    """Oldest first."""
    session = await sessions.find(db, session_id)
    after = decode_cursor(cursor, str) if cursor else None
    rows = await service.list_for_session(db, session.id, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryList(
        items=[delivery_read(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )
