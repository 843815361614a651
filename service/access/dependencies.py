"""Authentication, role checks and per-key limits as FastAPI dependencies.

The app mounts every /v1 router under ``Depends(authenticated)``; endpoints narrow it with
``require(...)``. Authentication also applies the limits of ``service.kit.ratelimit`` (per
replica): requests per key, unknown keys per client address, and, for whoever opens a live
session, sessions opened per second and held at once per key. A refusal is a 429 with
``Retry-After`` before anything of the request is done.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import State
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from service.access import service
from service.access.cache import LookupMany, key_cache
from service.access.roles import Role
from service.access.service import Caller
from service.kit.errors import (
    Forbidden,
    ProblemError,
    RateLimited,
    SessionLimitReached,
    Unauthenticated,
)
from service.kit.ratelimit import Reservation, limits, retry_after_seconds

# A key at its most sessions cannot know when one ends: a hint, not a promise.
SESSION_LIMIT_RETRY_AFTER = 5


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
) -> Caller | ProblemError:
    """A WebSocket client's identity, or the problem to refuse it with (401, or 429 from an
    address that presented too many unknown keys). With ``in_query`` the key may also come as
    the ``api-key`` query parameter (a Voice Live client may send it so; URLs end up in access
    logs, so only where a client needs it)."""
    key = presented_key(websocket)
    if not key and in_query:
        key = websocket.query_params.get("api-key")
    if not key:
        where = "the 'api-key' header or 'Authorization: Bearer'"
        if in_query:
            where = (
                "the 'api-key' header, 'Authorization: Bearer', or the 'api-key' query parameter"
            )
        return Unauthenticated(f"send {what} as {where}")
    try:
        return await identify(websocket, key)
    except ProblemError as problem:
        return problem


def client_address(connection: HTTPConnection) -> str:
    """The peer's address (behind a proxy, the proxy's unless uvicorn is told to trust its
    ``X-Forwarded-For``: ``--forwarded-allow-ips`` or ``FORWARDED_ALLOW_IPS``)."""
    return connection.client.host if connection.client else "unknown"


async def identify(connection: HTTPConnection, key: str) -> Caller:
    """Who holds ``key``; else 401, counted against the client's address. A key that has not
    just authenticated (held in the key cache) takes one of the address's tokens for its lookup,
    given back if it authenticates: an address past its limit gets 429 without a lookup, however
    many requests it sends at once, so keys cannot be guessed faster than that limit from one
    address, whatever the answers."""
    state = connection.app.state
    failures = limits(state).failures
    address = client_address(connection)
    key_hash = service.hash_key(key)
    known = key_cache(state).held(key_hash) is not None
    if not known and (wait := failures.take(address)):
        raise RateLimited(
            "too many unknown or revoked API keys were presented from this address",
            retry_after=retry_after_seconds(wait),
        )
    try:
        caller = await caller_of_hash(state, key_hash)
    except BaseException:
        if not known:  # no answer (the database is away: a 503): nothing learnt of the key
            failures.give_back(address)
        raise
    if caller is None:
        raise Unauthenticated("the API key is unknown or revoked")
    if not known:
        failures.give_back(address)
    return caller


def limit_key(caller: Caller) -> str:
    return caller.actor.key_id or caller.principal


def count_request(state: State, caller: Caller) -> None:
    """Count one request of the caller's key, or refuse it with 429 (counting nothing)."""
    limit = limits(state)
    wait = limit.requests.take(limit_key(caller))
    if wait:
        settings = limit.settings
        raise RateLimited(
            f"this API key made more than {settings.rate_limit_per_second:g} requests a second "
            f"({settings.rate_limit_burst} at once) on this replica",
            retry_after=retry_after_seconds(wait),
        )


def admit_session(state: State, caller: Caller) -> Reservation:
    """Count a new live session of the caller's key (leave the reservation when the session is
    over, or ``keep`` it for as long as the session is live), or refuse it with 429 (counting
    nothing): the key holds its most sessions here, or opened them too fast."""
    limit = limits(state)
    key = limit_key(caller)
    settings = limit.settings
    if limit.sessions.full(key):
        raise SessionLimitReached(
            f"this API key holds {settings.session_limit_per_key} live sessions on this "
            "replica, the most it may: end one first",
            retry_after=SESSION_LIMIT_RETRY_AFTER,
        )
    wait = limit.session_opens.take(key)
    if wait:
        raise RateLimited(
            f"this API key opened more than {settings.session_rate_limit_per_second:g} live "
            f"sessions a second ({settings.session_rate_limit_burst} at once) on this replica",
            retry_after=retry_after_seconds(wait),
        )
    return limit.sessions.reserve(key)


async def caller_of_hash(state: State, key_hash: str) -> Caller | None:
    """Who holds the key of ``key_hash`` (None: nobody, or it is revoked), from the app's key
    cache or else from the database, read in a short read-only transaction of its own. Only
    SHA-256 hashes are looked up, never the key: a lookup's timing can only tell how a hash the
    client chose compares with stored ones, which brings it no closer to any key."""

    async def lookup() -> Caller | None:
        async with state.read_sessionmaker() as db:
            return await service.authenticate_hash(db, key_hash)

    return await key_cache(state).caller(key_hash, lookup)


def keys_reader(state: State) -> LookupMany:
    """Many keys looked up at once, for the key cache's refresh (``KeyCache.start``)."""

    async def read(key_hashes: list[str]) -> dict[str, Caller]:
        async with state.read_sessionmaker() as db:
            return await service.authenticate_hashes(db, key_hashes)

    return read


async def authenticated(request: Request) -> Caller:
    key = presented_key(request)
    if key is None:
        raise Unauthenticated(
            "send an API key as 'Authorization: Bearer <key>' or in the 'api-key' header"
        )
    caller = await identify(request, key)
    count_request(request.app.state, caller)
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
