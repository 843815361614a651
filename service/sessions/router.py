from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.access.dependencies import AnyRole
from service.kit.db import DB
from service.kit.pagination import Cursor, Limit, decode_cursor, encode_cursor
from service.sessions import service
from service.sessions.models import LiveSession
from service.sessions.schemas import Kind, SessionList, SessionRead, State

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def session_read(row: LiveSession) -> SessionRead:
    return SessionRead(
        id=row.id,
        voicelive_session_id=row.voicelive_session_id,
        kind=Kind(row.kind),
        state=State(row.state),
        conversation_key=row.conversation_key,
        locale=row.locale,
        principal=row.principal,
        model=row.model,
        greeting_policy=row.greeting_policy,
        started_at=row.started_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


@router.get("", operation_id="list_sessions")
async def list_sessions(
    caller: AnyRole,
    db: DB,
    state: State | None = None,
    conversation_key: Annotated[str | None, Query(max_length=200)] = None,
    principal: Annotated[str | None, Query(max_length=200)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> SessionList:
    """Newest first."""
    after = decode_cursor(cursor, str) if cursor else None
    rows = await service.list_sessions(
        db,
        state=state,
        conversation_key=conversation_key,
        principal=principal,
        after=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return SessionList(
        items=[session_read(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


@router.get("/{session_id}", operation_id="get_session")
async def get_session(session_id: str, caller: AnyRole, db: DB) -> SessionRead:
    """By the service's session id or by the Voice Live session id from session.created."""
    return session_read(await service.find(db, session_id))
