from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import State as AppState

from service.access.dependencies import Agent, AnyRole
from service.access.service import Caller
from service.deliveries import service
from service.deliveries.engine import SessionEngine
from service.deliveries.errors import QueueFull, SessionElsewhere, SessionNotLive
from service.deliveries.intake import Admission, intake_for
from service.deliveries.models import Delivery
from service.deliveries.schemas import AttemptRead, DeliveryCreate, DeliveryList, DeliveryRead
from service.deliveries.states import FINAL, Priority, Status
from service.deliveries.tracking import Tracked
from service.kit.db import DB
from service.kit.pagination import Cursor, Limit, decode_cursor, encode_cursor
from service.phrases.cache import library_cache
from service.sessions import service as sessions
from service.sessions.models import LiveSession
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
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> DeliveryRead:
    """Speak an approved phrase into a live session, word for word."""
    # No request-scoped write session: reads go through short read-only transactions (which
    # never wait for a writer), and the row is written by the database's intake, with the
    # requests that wait at the same moment, committed before its words go out (intake.py).
    state = request.app.state
    recorded, engine = await _record_request(request, caller, session_id, body, idempotency_key)
    if isinstance(recorded, Delivery):  # what an earlier request with its Idempotency-Key made
        row = recorded
        response.headers["Idempotent-Replayed"] = "true"
    else:  # committed: its words go out first, its answer is built after
        assert engine is not None
        await engine.submit(recorded.tracked)
        row = Delivery(**recorded.values, attempt_rows=[])
    if body.wait is None:
        return delivery_read(row)  # as this request committed it, or as the earlier one left it
    if body.wait and engine is not None and Status(row.status) not in FINAL:
        finished = engine.finished_signal(row.id)
        try:
            async with asyncio.timeout(body.wait):
                await finished.wait()
        except TimeoutError:
            pass
    async with state.read_sessionmaker() as fresh:
        row = await service.get(fresh, row.id)
    if Status(row.status) in FINAL:
        response.status_code = 200
    return delivery_read(row)


@dataclass(frozen=True)
class Committed:
    """The columns of the delivery a request committed, and what its session's engine sends."""

    values: dict[str, Any]
    tracked: Tracked


async def _record_request(
    request: Request,
    caller: Caller,
    session_id: str,
    body: DeliveryCreate,
    idempotency_key: str | None,
) -> tuple[Committed | Delivery, SessionEngine | None]:
    """The delivery this request asks for, committed, or the one an earlier request with its
    Idempotency-Key made; with the session's engine here. (The committed one is not made an ORM
    object until its words went out: building one costs 0.16 ms, bench/delivery.py.)"""
    state = request.app.state
    settings: Settings = state.settings
    live: LiveSessions = state.live
    engine = live.get(session_id)
    session = engine.session_row if engine is not None and not engine.closed else None
    if session is None:
        async with state.read_sessionmaker() as db:
            session = sessions.unchanging(await sessions.find(db, session_id))
        engine = live.get(session.id)
        if engine is None and session.state == State.LIVE.value:
            # Live, but not held here: unless this replica ended it while we read. A session's
            # row says closed before its engine leaves the registry (sessions/lifecycle.finish),
            # so a second read tells an ending session from one held elsewhere.
            async with state.read_sessionmaker() as db:
                session = sessions.unchanging(await sessions.find(db, session_id))
    sessions.check_speaker(caller, session)
    digest = service.request_hash(session.id, body)
    existing = await _earlier(state, caller, idempotency_key, digest)
    if existing is not None:
        return existing, engine
    if session.state != State.LIVE.value:
        raise SessionNotLive(f"session {session.id} ended: {session.end_reason}")
    if engine is None:
        raise SessionElsewhere(
            f"session {session.id} is live on another replica ({session.replica or 'unknown'})"
            "; send the request there"
        )
    waiting = engine.queued() + engine.admitting
    if waiting >= settings.delivery_queue_limit:
        raise QueueFull(
            f"{waiting} deliveries already wait in session {session.id}",
            headers={"Retry-After": "1"},
        )
    # Counted from the check until it is submitted (no await between this function's end and
    # that), so that requests committed together cannot all pass the check.
    engine.admitting += 1
    try:
        return await _commit(request, caller, session, body, idempotency_key, digest, engine)
    finally:
        engine.admitting -= 1


async def _commit(
    request: Request,
    caller: Caller,
    session: LiveSession,
    body: DeliveryCreate,
    idempotency_key: str | None,
    digest: str,
    engine: SessionEngine,
) -> tuple[Committed | Delivery, SessionEngine]:
    state = request.app.state
    settings: Settings = state.settings
    values = service.prepare(
        caller.actor,
        session,
        body,
        idempotency_key=idempotency_key,
        digest=digest,
        max_plays=settings.delivery_max_plays,
        phrase=await library_cache(request).phrase(body.phrase_key),
    )
    tracked = service.tracked_of(values)
    admission = Admission(caller.actor, values, orphaned=lambda: engine.submit_soon(tracked))
    try:
        await intake_for(state.sessionmaker).admit(admission)
    except IntegrityError:
        # A concurrent request with the same key won the insert; it is committed by now.
        existing = await _earlier(state, caller, idempotency_key, digest)
        if existing is None:
            raise
        return existing, engine
    return Committed(values, tracked), engine


async def _earlier(
    state: AppState, caller: Caller, idempotency_key: str | None, digest: str
) -> Delivery | None:
    if idempotency_key is None:
        return None
    async with state.read_sessionmaker() as db:
        return await service.earlier_request(db, caller.principal, idempotency_key, digest)


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
