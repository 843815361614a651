"""Refusing a WebSocket before it opens, with the same problem+json an HTTP request gets."""

from __future__ import annotations

from starlette.websockets import WebSocket

from service.kit.errors import problem_response


async def deny(websocket: WebSocket, status: int, slug: str, title: str, detail: str) -> None:
    response = problem_response(status, slug, title, detail)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # a server without the denial extension: the closest a WebSocket can say
        await websocket.close(1008 if status in (401, 403) else 1011, detail[:123])
