"""Authentication and role checks as FastAPI dependencies.

The app mounts every /v1 router under ``Depends(authenticated)``; endpoints narrow it with
``require(...)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from service.access import service
from service.access.roles import Role
from service.access.service import Caller
from service.kit.db import DB
from service.kit.errors import Forbidden, Unauthenticated


def presented_key(request: HTTPConnection) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.headers.get("api-key") or None


async def authenticated(request: Request, db: DB) -> Caller:
    key = presented_key(request)
    if key is None:
        raise Unauthenticated(
            "send an API key as 'Authorization: Bearer <key>' or in the 'api-key' header"
        )
    caller = await service.authenticate(db, key)
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
