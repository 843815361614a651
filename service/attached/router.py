"""Attached sessions: the agent holds its own Voice Live connection and registers it here
(``POST /v1/sessions``); the connector then opens the session's control WebSocket, over which the
service sends the events of its deliveries and the connector reports what delivery tracking needs.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from service.access.dependencies import Agent, admit_session, count_request, websocket_caller
from service.attached.channel import ControlChannel
from service.attached.schemas import AttachedSessionCreate, AttachedSessionRead
from service.deliveries.engine import SessionEngine
from service.deliveries.errors import SessionElsewhere, SessionNotLive
from service.greetings.service import policy_for_session
from service.kit.db import DB
from service.kit.errors import ProblemError
from service.kit.sockets import deny_problem, refused_while_the_database_is_down
from service.sessions import service as sessions
from service.sessions.lifecycle import finish, start_engine
from service.sessions.models import LiveSession
from service.sessions.registry import LiveSessions
from service.sessions.router import session_read
from service.sessions.schemas import Kind, State
from service.settings import Settings

log = logging.getLogger("service.attached")

router = APIRouter(tags=["sessions"])
control_router = APIRouter()

CONTROL_ROUTE = "attached_control"


@router.post(
    "/v1/sessions",
    status_code=201,
    operation_id="attach_session",
    response_model=AttachedSessionRead,
)
async def attach_session(
    body: AttachedSessionCreate, caller: Agent, db: DB, request: Request, response: Response
) -> AttachedSessionRead:
    """Register a Voice Live connection the agent holds itself. Deliveries can be requested at
    once; they go out when the connector has opened ``control_url``."""
    state = request.app.state
    settings: Settings = state.settings
    with admit_session(state, caller) as reservation:  # 429 here: nothing was done
        policy = await policy_for_session(db, body.greeting)
        session = await sessions.open_session(
            db,
            caller.actor,
            kind=Kind.ATTACHED,
            conversation_key=body.conversation_key,
            locale=body.locale,
            model=body.model,
            greeting_policy=policy.name if policy else None,
            replica=settings.replica_url,
        )
        if body.voicelive_session_id is not None:
            session.voicelive_session_id = body.voicelive_session_id
        await db.commit()
        live: LiveSessions = state.live
        maker = state.sessionmaker

        async def on_end(reason: str) -> None:
            await finish(engine, maker, live, reason)

        channel = ControlChannel(
            session.id, resume_timeout=settings.attached_resume_timeout, on_end=on_end
        )
        engine = start_engine(session, channel, maker, live, settings)
        reservation.keep(session.id)  # counted for as long as this process holds it
    channel.engine = engine
    engine.pause()  # until the connector is there
    channel.wait_for_connector()
    control = str(request.url_for(CONTROL_ROUTE, session_id=session.id))
    response.headers["Location"] = f"/v1/sessions/{session.id}"
    return AttachedSessionRead(
        **session_read(session).model_dump(),
        control_url=control.replace("http", "ws", 1),
    )


def control_channel_of(session: LiveSession, engine: SessionEngine | None) -> ControlChannel:
    if session.state != State.LIVE.value:
        raise SessionNotLive(f"session {session.id} ended: {session.end_reason}")
    channel = engine.transport if engine is not None else None
    if not isinstance(channel, ControlChannel):
        where = "is relayed" if session.kind == Kind.RELAY.value else "is held by another replica"
        raise SessionElsewhere(f"session {session.id} {where}; it has no control channel here")
    return channel


async def control_endpoint(websocket: WebSocket) -> None:
    """The control WebSocket of one attached session, for the key that registered it."""
    async with refused_while_the_database_is_down(websocket):
        await _control(websocket)


async def _control(websocket: WebSocket) -> None:
    caller = await websocket_caller(websocket)
    if isinstance(caller, ProblemError):
        await deny_problem(websocket, caller)
        return
    live: LiveSessions = websocket.app.state.live
    try:
        count_request(websocket.app.state, caller)  # a handshake counts as a request
        async with websocket.app.state.read_sessionmaker() as db:
            session = await sessions.find(db, websocket.path_params["session_id"])
        sessions.check_speaker(caller, session)
        channel = control_channel_of(session, live.get(session.id))
    except ProblemError as exc:
        await deny_problem(websocket, exc)
        return
    await websocket.accept()
    await channel.serve(websocket)


control_router.routes.append(
    WebSocketRoute("/v1/sessions/{session_id}/control", control_endpoint, name=CONTROL_ROUTE)
)
