"""Authentication and role checks as FastAPI dependencies.

The app mounts every /v1 router under ``Depends(authenticated)``; endpoints narrow it with
``require(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import State
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from service.access import service
from service.access.cache import key_cache
from service.access.roles import Role
from service.access.service import Caller
from service.kit.errors import Forbidden, Unauthenticated


def presented_key(request: HTTPConnection) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.headers.get("api-key") or None


async def websocket_caller(
    websocket: WebSocket, *, what: str = "an API key", in_query: bool = False
) -> Caller | str:
    """A WebSocket client's identity, or why it is refused. With ``in_query`` the key may also
    come as the ``api-key`` query parameter (a Voice Live client may send it so; URLs end up in
    access logs, so only where a client needs it)."""
    key = presented_key(websocket)
    if not key and in_query:
        key = websocket.query_params.get("api-key")
    if not key:
        where = "the 'api-key' header or 'Authorization: Bearer'"
        if in_query:
            where = (
                "the 'api-key' header, 'Authorization: Bearer', or the 'api-key' query parameter"
            )
        return f"send {what} as {where}"
    caller = await caller_of(websocket.app.state, key)
    if caller is None:
        return "the API key is unknown or revoked"
    return caller


async def caller_of(state: State, key: str) -> Caller | None:
    """Who holds ``key`` (None: nobody, or it is revoked), from the app's key cache or else from
    the database, read in a short read-only transaction of its own."""
    key_hash = service.hash_key(key)

    async def lookup() -> Caller | None:
        async with state.read_sessionmaker() as db:
            return await service.authenticate_hash(db, key_hash)

    return await key_cache(state).caller(key_hash, lookup)


async def authenticated(request: Request) -> Caller:
    key = presented_key(request)
    if key is None:
        raise Unauthenticated(
            "send an API key as 'Authorization: Bearer <key>' or in the 'api-key' header"
        )
    caller = await caller_of(request.app.state, key)
    if caller is None:
        raise Unauthenticated("the API key is unknown or revoked")
    request.state.caller = caller
    return caller


AuthenticatedCaller = Annotated[Caller, Depends(authenticated)]


def require(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets through callers holding at least one of ``roles``."""
    allowed = frozenset(roles)

    async def check(caller: AuthenticatedCaller) -> Caller:
        if not caller.roles & allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Forbidden(
                f"this operation needs the role {names}; the key of {caller.principal!r} has "
                f"{', '.join(sorted(r.value for r in caller.roles))}",
                required_roles=sorted(r.value for r in allowed),
            )
        return caller

    return check


Admin = Annotated[Caller, Depends(require(Role.ADMIN))]
Editor = Annotated[Caller, Depends(require(Role.EDITOR))]
Approver = Annotated[Caller, Depends(require(Role.APPROVER))]
Auditor = Annotated[Caller, Depends(require(Role.AUDITOR))]
Agent = Annotated[Caller, Depends(require(Role.AGENT, Role.ADMIN))]
AnyRole = AuthenticatedCaller
