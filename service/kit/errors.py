"""RFC 9457 problem details: one error base, one renderer, one handler per error family.

Every error the API answers carries a stable ``type`` (``/problems/<slug>``) that clients branch on;
``title`` is the human summary of that type and ``detail`` says what happened this time.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.kit.requests import request_id

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("service.errors")


def problem_type(slug: str) -> str:
    return f"/problems/{slug}"


class ProblemError(Exception):
    """Base of every error the service answers on purpose. Subclasses set status, slug, title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class DatabaseUnavailable(ProblemError):
    """The database could not be reached or used (``database_unreachable``): nothing of the
    request was written; worth retrying."""

    status = 503
    slug = "database-unavailable"
    title = "The database is unavailable"

    def __init__(
        self,
        detail: str = (
            "The service cannot reach its database right now; nothing was changed. Retry later."
        ),
    ) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


class Unauthenticated(ProblemError):
    status = 401
    slug = "unauthenticated"
    title = "Missing or invalid API key"

    def __init__(self, detail: str, **extra: Any):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="compliance"'}, **extra)


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class InvalidInput(ProblemError):
    """Input that is well-formed JSON of the right shape but breaks a rule of the domain."""

    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class PreconditionFailed(ProblemError):
    status = 412
    slug = "precondition-failed"
    title = "The resource changed since it was read"


class PreconditionRequired(ProblemError):
    status = 428
    slug = "precondition-required"
    title = "If-Match is required"


class UnsupportedMediaType(ProblemError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported content type"


class RateLimited(ProblemError):
    """Too much from one key or address: nothing of the request was done; ``Retry-After`` says
    in how many whole seconds it may come again (also ``retry_after`` in the body)."""

    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any):
        super().__init__(
            detail, headers={"Retry-After": str(retry_after)}, retry_after=retry_after, **extra
        )
        self.retry_after = retry_after


class SessionLimitReached(RateLimited):
    slug = "session-limit"
    title = "Too many live sessions for this key"


def validation_problems(exc: ValidationError) -> list[str]:
    """``field.path: message`` per error, without the input (it may be a secret)."""
    return [
        f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    ]


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    rid = request_id.get()
    if rid is not None:  # quoted to support: it finds the request's log lines
        body["request_id"] = rid
        headers = {**(headers or {}), "X-Request-ID": rid}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        instance=request.url.path,
        headers=exc.headers,
        **exc.extra,
    )


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem_response(
        422,
        "validation-error",
        "Request validation failed",
        "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
        instance=request.url.path,
        errors=errors,
    )


_HTTP_SLUGS = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def _allowed_methods(request: Request) -> str:
    """Every method the path answers to. Starlette's own ``Allow`` names only the methods of the
    first route whose path matched, and FastAPI makes one route per method."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI answers 400 for a JSON body it cannot decode as text; a malformed body is a
        # 422 like every other (it parses invalid JSON into one already).
        error = {"loc": ["body"], "msg": "the body is not UTF-8 text", "type": "unicode_decode"}
        return problem_response(
            422,
            "validation-error",
            "Request validation failed",
            "body: the body is not UTF-8 text",
            instance=request.url.path,
            errors=[error],
        )
    status = HTTPStatus(exc.status_code)
    slug = _HTTP_SLUGS.get(exc.status_code, "http-error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = allowed
    return problem_response(
        exc.status_code,
        slug,
        status.phrase,
        str(exc.detail),
        instance=request.url.path,
        headers=headers,
    )


# What a driver says when the database is down, restarting or busy (not a wrong query).
_UNAVAILABLE = re.compile(
    r"database is locked|unable to open database|disk i/o error|could not connect|connection "
    r"(refused|reset|was closed|is closed)|server closed|terminating connection|cannot connect now",
    re.IGNORECASE,
)


def database_unreachable(exc: BaseException) -> bool:
    """The database could not be reached or used for now: worth retrying, not a bug."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError):
            if seen.connection_invalidated or isinstance(seen, sa_exc.InterfaceError):
                return True
            if isinstance(seen, sa_exc.OperationalError) and _UNAVAILABLE.search(str(seen.orig)):
                return True
        if isinstance(seen, sa_exc.TimeoutError | ConnectionError | TimeoutError):
            return True  # the pool's wait, or the driver's socket
        seen = seen.__cause__ or seen.__context__
    return False


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if database_unreachable(exc):
        # The transaction was rolled back with the request: nothing of it was written.
        log.warning(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return await _on_problem(request, DatabaseUnavailable())
    # The traceback goes to the log; the client gets no internals.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        "internal-error",
        "Internal server error",
        "The service failed to handle this request.",
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    # Named types are answered by the exception middleware; the catch-all below would also
    # re-raise to the server, which logs a crash: an outage is not one.
    for kind in (sa_exc.DBAPIError, sa_exc.TimeoutError, ConnectionError, TimeoutError):
        app.add_exception_handler(kind, _on_unexpected)
    app.add_exception_handler(Exception, _on_unexpected)
