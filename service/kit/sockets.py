"""Refusing a WebSocket before it opens, with the same problem+json an HTTP request gets."""

from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket

from service.kit.errors import ProblemError, problem_response

# Without the denial extension a close code is all a refusal can say.
_CLOSE_CODES = {401: 1008, 403: 1008, 429: 1013}  # 1013: try again later


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
