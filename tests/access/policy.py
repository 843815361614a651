"""Who may call what, written down independently of the code, and every route of the app to check.

The routes come from the app itself, so an endpoint added later without a line here fails the
matrix tests instead of going unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from service.app import create_app
from service.settings import Settings

ROLES = ("admin", "editor", "approver", "agent", "auditor")
ANY_ROLE = frozenset(ROLES)

# One principal of tests.helpers.PEOPLE holding each role, and nothing else.
HOLDER = {
    "admin": "admin",
    "editor": "alice",
    "approver": "bob",
    "agent": "agent-1",
    "auditor": "audrey",
}

# Reachable without a key: probes carry no credentials, and the API description is public.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})

# The phrase, version and key the matrix addresses (set up by the matrix test).
PHRASE_KEY = "matrix"
VERSION_NUMBER = 1
UNKNOWN_KEY_ID = "0" * 32
SESSION_ID = "ses_matrix"
DELIVERY_ID = "dlv_matrix"
POLICY_NAME = "matrix"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as declared, e.g. /v1/phrases/{key}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def url(self) -> str:
        return self.path.format(
            key=PHRASE_KEY,
            number=VERSION_NUMBER,
            key_id=UNKNOWN_KEY_ID,
            session_id=SESSION_ID,
            delivery_id=DELIVERY_ID,
            name=POLICY_NAME,
        )

    @property
    def sends_body(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH"}


def allowed_roles(endpoint: Endpoint) -> frozenset[str]:
    """The expected policy. Raises for a /v1 route this table does not know yet."""
    method, path = endpoint.method, endpoint.path
    if path.startswith("/v1/api-keys"):
        return frozenset({"admin"})
    if path == "/v1/audit/public-key":  # public by nature: anyone may check a signature
        return ANY_ROLE
    if path == "/v1/audit/checkpoints" and method == "POST":
        return frozenset({"auditor", "admin"})
    if path.startswith("/v1/audit"):
        return frozenset({"auditor"})
    if path.startswith("/v1/phrases"):
        if method == "POST" and path.rsplit("/", 1)[-1] in {"approve", "reject", "retire"}:
            return frozenset({"approver"})
        if method == "GET":
            return ANY_ROLE
        if method in {"POST", "PATCH"}:
            return frozenset({"editor"})
    if path.startswith("/v1/greeting-policies"):
        return ANY_ROLE if method == "GET" else frozenset({"editor"})
    if path in ("/v1/sessions/{session_id}/deliveries", "/v1/sessions") and method == "POST":
        return frozenset({"agent", "admin"})
    if path.startswith(("/v1/sessions", "/v1/deliveries")) and method == "GET":
        return ANY_ROLE
    raise LookupError(f"no expected roles for {endpoint}: add it to tests/access/policy.py")


def http_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app answers, HEAD aside (it mirrors GET)."""
    found: list[Endpoint] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None or methods is None:
            continue  # WebSocket routes have no methods; their auth is tested with the relay
        found.extend(Endpoint(m, path) for m in sorted(methods) if m != "HEAD")
    return found


def v1_endpoints(app: FastAPI) -> list[Endpoint]:
    """Every method of every APIRoute under /v1."""
    found: list[Endpoint] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            found.extend(Endpoint(m, route.path) for m in sorted(route.methods or ()))
    return found


def app_for_collection() -> FastAPI:
    """An app built only to read its routes at collection time; it never starts."""
    return create_app(Settings(database_url="sqlite:///unused-at-collection.db"))
