"""The OpenAPI document names every answer an operation can give, its problems included.

FastAPI documents the success of each route and a 422 in its own shape; this service answers every
error as ``application/problem+json`` (service.kit.errors). Rather than repeat ``responses=`` on
every route, the problem answers are derived here, once, from what each route is made of:

- it depends on the authentication dependency: 401 (with ``WWW-Authenticate``), 429 (per-key rate
  limit, with ``Retry-After``) and 503 (the database is unavailable, with ``Retry-After``); the
  document also names the two ways a key is presented (``securitySchemes``);
- a dependency of its own looks at the caller (a role check): 403;
- path parameters: 404; a request body: 413 (a body that is not UTF-8 is a 422 like any other
  malformed body, see ``kit.errors``); an ``If-Match`` header: 412, and where it is required
  (428) it says so;
- authenticated routes and those with parameters or a body: 422, for a parameter or body that
  fails validation and for a URL with U+0000 (the public probes, ``/healthz`` and the like, also
  answer 422 to a URL with U+0000, undocumented);

plus ``OPERATION_ANSWERS``, what the rules of single operations add (409 conflicts and the like).
``tests/fuzz`` holds the service to this document, status codes, content types and bodies alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from service.kit.errors import PROBLEM_JSON

PROBLEM = "Problem"
VALIDATION_PROBLEM = "ValidationProblem"
_REF = "#/components/schemas/"
# FastAPI's own 422 shape, which this service never answers.
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": PROBLEM,
    "type": "object",
    "description": "An RFC 9457 problem. Branch on `type`, which is stable; `detail` says what "
    "happened this time. Some problems carry extension members (below); more may be added.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri-reference",
            "description": "`/problems/<slug>`, e.g. `/problems/four-eyes`.",
        },
        "title": {"type": "string", "description": "The summary of this type of problem."},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong this time."},
        "instance": {"type": "string", "description": "The path the request was sent to."},
        "request_id": {
            "type": "string",
            "description": "Also the response's `X-Request-ID`: it finds the request's log lines.",
        },
        "required_roles": {
            "type": "array",
            "items": {"type": "string"},
            "description": "403 `forbidden`: any one of these roles is needed.",
        },
        "rule": {"type": "string", "description": "403 `four-eyes`: the rule broken."},
        "current_status": {
            "type": "string",
            "description": "409 `illegal-transition`: the version's status.",
        },
        "action": {"type": "string", "description": "409 `illegal-transition`: the move asked."},
        "reason": {"type": "string", "description": "409 on an API key: why it cannot be revoked."},
        "current_etag": {"type": "string", "description": "412: the version's ETag now."},
        "etag": {"type": "string", "description": "428: the ETag to send in `If-Match`."},
        "available_locales": {
            "type": "array",
            "items": {"type": "string"},
            "description": "404 `locale-not-available`: the locales the version has.",
        },
    },
    "additionalProperties": True,
}

_VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": VALIDATION_PROBLEM,
    "description": "A problem with the request's content: `validation-error` (its shape, with "
    "`errors`) or a rule of the domain (`invalid-input` and others, often with `problems`).",
    "allOf": [
        {"$ref": _REF + PROBLEM},
        {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "description": "`validation-error`: one entry per field that failed.",
                    "items": {
                        "type": "object",
                        "required": ["loc", "msg", "type"],
                        "properties": {
                            "loc": {
                                "type": "array",
                                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                            },
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                },
                "problems": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Each rule the content breaks.",
                },
                "param": {"type": "string", "description": "The parameter at fault."},
            },
        },
    ],
}

_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer` challenge.",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}

# What each status means wherever the shape of a route implies it.
_GENERIC: dict[int, str] = {
    401: "No API key, or one that is unknown or revoked.",
    403: "The key does not hold a role this operation needs.",
    404: "Nothing is known by the identifier in the path.",
    412: "`If-Match` names an ETag the version no longer has: read it again.",
    413: "The request body is larger than the service accepts.",
    422: "A parameter or the body is invalid (`validation-error`), or the content breaks a rule.",
    429: "Too many requests from this key, or too many unknown keys from this address: wait "
    "`Retry-After` seconds.",
    503: "The database is unavailable; nothing was changed. Retry after `Retry-After` seconds.",
}

# What the rules of single operations add to what their shape implies, by operation id (each
# description replaces the generic one of its status, so it says everything that status means).
OPERATION_ANSWERS: dict[str, dict[int, str]] = {
    "revoke_api_key": {409: "The key is already revoked, or it is the last active admin key."},
    "create_phrase": {409: "A phrase with this key already exists."},
    "import_phrases": {
        415: "The document is neither JSON nor YAML.",
        422: "The document is not valid, or a version in it breaks a rule; nothing was imported.",
    },
    "resolve_phrase": {
        404: "No such phrase or pinned version, no approved version in force at that instant, "
        "or no text for the locale within the fallback the phrase allows.",
    },
    "update_version": {
        409: "The version is not a draft.",
        428: "`If-Match` is missing: drafts are edited with optimistic concurrency.",
    },
    "submit_version": {409: "Only a draft can be submitted."},
    "approve_version": {
        403: "The key does not hold the approver role, or its principal wrote or edited the "
        "version (four eyes).",
        409: "The version is not in review, or the caller already approved it.",
    },
    "reject_version": {409: "Only a version in review can be rejected."},
    "retire_version": {409: "Only an approved version can be retired."},
    "diff_versions": {404: "No such phrase, version, or `against` version."},
    "create_greeting_policy": {
        409: "A greeting policy with this name already exists.",
        422: "The body is invalid, or the policy names a phrase that does not exist.",
    },
    "replace_greeting_policy": {
        422: "The body is invalid, or the policy names a phrase that does not exist."
    },
    "attach_session": {
        404: "No greeting policy has the name given.",
        429: "Too many requests, or this key holds (or opened within the last moment) as many "
        "live sessions as it may: wait `Retry-After` seconds.",
    },
    "create_delivery": {
        403: "The key holds neither the agent nor the admin role, or the session belongs to "
        "another agent.",
        404: "No such session, phrase or version, no approved version in force, or no text "
        "for the locale.",
        409: "The session has ended, or its connection is held by another replica.",
        422: "The body is invalid, the variables do not fit the phrase, or the "
        "Idempotency-Key was used for another request.",
        429: "Too many requests from this key, or too many deliveries already wait in this "
        "session: wait `Retry-After` seconds.",
    },
    "readyz": {503: "The database cannot be reached."},
    "metrics": {503: "The database is unavailable."},
}


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _implied(
    operation: dict[str, Any],
    dependant: Dependant,
    authentication: Callable[..., Any],
) -> dict[int, str]:
    """The problem answers the shape of one operation implies."""
    calls = [d.call for d in _dependencies(dependant)]
    statuses: set[int] = set()
    if authentication in calls:
        statuses |= {401, 422, 429, 503}
        # A dependency that takes the authenticated caller exists to refuse some of them.
        if any(
            d.call is not authentication and any(s.call is authentication for s in d.dependencies)
            for d in _dependencies(dependant)
        ):
            statuses.add(403)
    parameters = operation.get("parameters", [])
    if any(p["in"] == "path" for p in parameters):
        statuses.add(404)
    if parameters or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(413)
    if any(p["in"] == "header" and p["name"].lower() == "if-match" for p in parameters):
        statuses.add(412)
    return {status: _GENERIC[status] for status in statuses}


def _problem_answer(status: int, description: str) -> dict[str, Any]:
    schema = VALIDATION_PROBLEM if status == 422 else PROBLEM
    answer: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": _REF + schema}}},
    }
    if status in _HEADERS:
        answer["headers"] = _HEADERS[status]
    return answer


def _describe(
    document: dict[str, Any], app: FastAPI, authentication: Callable[..., Any]
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = document.get("paths", {})
    for route in iter_route_contexts(app.routes):
        operation_id = getattr(route, "operation_id", None)
        dependant = getattr(route, "dependant", None)
        if operation_id is None or dependant is None:
            continue
        for method in route.methods or ():
            operation = paths.get(route.path_format or "", {}).get(method.lower())
            if operation is None:
                continue  # HEAD, or a route left out of the schema
            answers = _implied(operation, dependant, authentication)
            answers.update(OPERATION_ANSWERS.get(operation_id, {}))
            if 428 in answers:  # the service answers 428 rather than 422 when it is missing
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "header" and parameter["name"].lower() == "if-match":
                        parameter["required"] = True
            responses = operation.setdefault("responses", {})
            for status in sorted(answers):
                responses[str(status)] = _problem_answer(status, answers[status])
            if authentication in (d.call for d in _dependencies(dependant)):
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_422:
        schemas.pop(name, None)
    schemas[PROBLEM] = _PROBLEM_SCHEMA
    schemas[VALIDATION_PROBLEM] = _VALIDATION_PROBLEM_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer`"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
    }
    return document


def install_openapi(app: FastAPI, *, authentication: Callable[..., Any]) -> None:
    """Make ``app.openapi()`` answer the document with every problem answer named.
    ``authentication`` is the dependency that identifies the caller (401 when it cannot)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _describe(generate(), app, authentication)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
