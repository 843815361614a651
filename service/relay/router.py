"""The relay: the service's own ``/voice-live/realtime``. An agent using the official SDK changes
only its ``endpoint`` (and uses a service key with the agent role as its credential).

Order of a connection: authenticate, count it against the key's session limits (429 with
``Retry-After`` when over), read the session parameters, choose the greeting policy, open the
upstream; any failure refuses the agent with an HTTP problem before the WebSocket opens.
Only then is the session registered, the socket accepted and the two directions relayed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from fastapi import APIRouter, WebSocket
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send

from service.access.dependencies import admit_session, websocket_caller
from service.access.roles import Role
from service.access.service import Caller
from service.deliveries.engine import TransportClosed
from service.greetings.errors import GreetingPolicyNotFound
from service.greetings.service import policy_for_session
from service.kit.errors import ProblemError, RateLimited
from service.kit.sockets import deny, deny_problem, refused_while_the_database_is_down
from service.relay.frames import connect_request
from service.relay.pumps import Ending, relay
from service.relay.upstream import Upstream, UpstreamUnavailable
from service.sessions import service as sessions
from service.sessions.lifecycle import finish, start_engine
from service.sessions.models import LiveSession
from service.sessions.registry import LiveSessions
from service.sessions.schemas import Kind
from service.settings import Settings

log = logging.getLogger("service.relay")

router = APIRouter()


class RelayApp:
    """The relay as a plain ASGI app, so that its pumps get the socket's own ``receive`` and
    ``send`` (see pumps.relay); the handshake still uses Starlette's WebSocket."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await relay_endpoint(WebSocket(scope, receive=receive, send=send), receive, send)


router.routes.append(WebSocketRoute("/voice-live/realtime", RelayApp(), name="relay"))


class RelayTransport:
    """Delivery events go straight onto the upstream socket the agent's frames also use."""

    def __init__(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        self._upstream = upstream

    async def send_event(self, event: dict[str, Any]) -> None:
        try:
            await self._upstream.send_str(json.dumps(event, separators=(",", ":")))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            raise TransportClosed from exc


async def relay_endpoint(websocket: WebSocket, receive: Receive, send: Send) -> None:
    async with refused_while_the_database_is_down(websocket):
        await _relay(websocket, receive, send)


async def _relay(websocket: WebSocket, receive: Receive, send: Send) -> None:
    state = websocket.app.state
    caller = await websocket_caller(websocket, what="an agent API key", in_query=True)
    if isinstance(caller, ProblemError):
        await deny_problem(websocket, caller)
        return
    if Role.AGENT not in caller.roles and Role.ADMIN not in caller.roles:
        detail = f"the relay needs a key with the agent role; {caller.principal!r} has none"
        await deny(websocket, 403, "forbidden", "Not allowed", detail)
        return
    try:
        reservation = admit_session(state, caller)
    except RateLimited as exc:
        await deny_problem(websocket, exc)
        return
    with reservation:  # the whole connection is one of the key's live sessions
        await _open_session(websocket, receive, send, caller)


async def _open_session(websocket: WebSocket, receive: Receive, send: Send, caller: Caller) -> None:
    state = websocket.app.state
    settings: Settings = state.settings
    try:
        request = connect_request(dict(websocket.query_params), dict(websocket.headers))
    except ValueError as exc:
        await deny(websocket, 422, "invalid-input", "Invalid session parameters", str(exc))
        return
    try:
        async with state.read_sessionmaker() as db:
            policy = await policy_for_session(db, request.greeting)
    except GreetingPolicyNotFound as exc:
        await deny(websocket, 404, exc.slug, exc.title, exc.detail)
        return
    upstream: Upstream = state.upstream
    try:
        connection = await upstream.open(request)
    except UpstreamUnavailable as exc:
        await deny(websocket, 502, "upstream-unavailable", "Voice Live is unavailable", str(exc))
        return
    try:
        async with state.sessionmaker.begin() as db:
            session = await sessions.open_session(
                db,
                caller.actor,
                kind=Kind.RELAY,
                conversation_key=request.conversation_key,
                locale=request.locale,
                model=request.model,
                greeting_policy=policy.name if policy else None,
                replica=settings.replica_url,
            )
    except BaseException:
        await connection.close(code=1011, reason="the service could not register the session")
        raise
    try:
        # The SDK's raw socket: frames are relayed as they are, never re-serialized.
        upstream_socket = connection._connection
        client = Client(websocket, receive, send)
        await _run(client, upstream_socket, session, state.sessionmaker, state.live, settings)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


@dataclass(frozen=True)
class Client:
    websocket: WebSocket
    receive: Receive
    send: Send


async def _run(
    client: Client,
    upstream: aiohttp.ClientWebSocketResponse,
    session: LiveSession,
    maker: async_sessionmaker[AsyncSession],
    live: LiveSessions,
    settings: Settings,
) -> None:
    engine = start_engine(session, RelayTransport(upstream), maker, live, settings)
    ending: Ending | None = None
    try:
        await client.websocket.accept()
        ending = await relay(
            client.websocket,
            client.receive,
            client.send,
            upstream,
            engine,
            settings.relay_stall_timeout,
        )
    finally:
        await finish(engine, maker, live, ending.describe() if ending else "the service stopped")
