"""Refusing a WebSocket before it opens, with the same problem+json an HTTP request gets."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from service.kit.errors import (
    DatabaseUnavailable,
    ProblemError,
    database_unreachable,
    problem_response,
)

log = logging.getLogger("service.errors")

# Without the denial extension a close code is all a refusal can say.
_CLOSE_CODES = {401: 1008, 403: 1008, 429: 1013, 503: 1013}  # 1013: try again later


async def deny(
    websocket: WebSocket,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> None:
    response = problem_response(status, slug, title, detail, headers=headers, **extra)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the denial extension: the closest a WebSocket can say
        await websocket.close(_CLOSE_CODES.get(status, 1011), detail[:123])


async def deny_problem(websocket: WebSocket, problem: ProblemError) -> None:
    """Refuse with ``problem`` as the HTTP API would answer it (its headers included, such as
    ``Retry-After`` or ``WWW-Authenticate``)."""
    await deny(
        websocket,
        problem.status,
        problem.slug,
        problem.title,
        problem.detail,
        headers=problem.headers,
        **problem.extra,
    )


@contextlib.asynccontextmanager
async def refused_while_the_database_is_down(websocket: WebSocket) -> AsyncIterator[None]:
    """Until the socket is accepted, a database that cannot be reached refuses the client with
    the 503 (and ``Retry-After``) an HTTP request gets, instead of a bare 500; afterwards the
    error goes on as it is (the session's own end handles it)."""
    try:
        yield
    except Exception as exc:
        if websocket.application_state is not WebSocketState.CONNECTING:
            raise
        if not database_unreachable(exc):
            raise
        log.warning(
            "database unavailable on WebSocket %s: %s", websocket.url.path, type(exc).__name__
        )
        await deny_problem(websocket, DatabaseUnavailable())
