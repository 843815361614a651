"""Every request gets an id: taken from ``X-Request-ID`` when the caller sent a sane one (so a
gateway's id carries through), else made here. It is in the response's ``X-Request-ID`` header,
in every problem+json body (``request_id``) and on every log line written while the request (or
the WebSocket session it opened) runs, so one id finds a request's whole story.

The same middleware sets the security headers of HTTP responses. WebSocket sessions get the id
but no wrapping of ``send``: the relay's frames pass straight through.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_SANE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# The API answers JSON only: nothing may run or load. /docs is Swagger UI, which loads its own
# script and styles from a CDN, so it keeps the browser's defaults.
_API_ONLY = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]
_DOCS = ("/docs", "/openapi.json")


def new_request_id() -> str:
    return "req_" + secrets.token_hex(8)


def given_or_new(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE.fullmatch(text) else new_request_id()
    return new_request_id()


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = given_or_new(scope.get("headers", []))
        request_id.set(rid)  # each request runs in its own task: nothing leaks to the next
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        extra = [(b"x-request-id", rid.encode()), *_SECURITY_HEADERS]
        if not scope.get("path", "").startswith(_DOCS):
            extra += _API_ONLY

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)
