"""Request ids (header, problem bodies, log lines), security headers, and CORS closed by
default: what an operator tracing a request and a browser on another origin see."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.kit.logs import JsonFormatter
from service.settings import Settings
from tests.helpers import Api

PROBLEM_JSON = "application/problem+json"


class Lines(logging.Handler):
    """The service's log lines, formatted as in production."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def log_lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_every_response_names_its_request(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")
    ids = {first.headers["x-request-id"], second.headers["x-request-id"]}
    assert len(ids) == 2
    assert all(i.startswith("req_") for i in ids)


async def test_a_gateways_request_id_is_kept_and_a_strange_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    kept = await client.get("/healthz", headers={"X-Request-ID": "gw-7f3a.12:9"})
    assert kept.headers["x-request-id"] == "gw-7f3a.12:9"
    odd = await client.get("/healthz", headers={"X-Request-ID": "<script>" + "x" * 200})
    assert odd.headers["x-request-id"].startswith("req_")


async def test_a_problem_carries_the_request_id_in_body_and_header(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/phrases", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["request_id"] == "trace-42"
    assert response.headers["x-request-id"] == "trace-42"


async def test_log_lines_written_during_a_request_carry_its_id(api: Api, log_lines: Lines) -> None:
    response = await api.http.post(
        "/v1/phrases",
        json={
            "key": "traced",
            "title": "Traced",
            "category": "disclosure",
            "default_locale": "en-US",
        },
        headers={**api.as_("alice"), "X-Request-ID": "trace-audit-1"},
    )
    assert response.status_code == 201, response.text
    audit_lines = [line for line in log_lines.lines if "audit_event" in line]
    assert audit_lines, "creating a phrase logs its audit event"
    assert {line.get("request_id") for line in audit_lines} == {"trace-audit-1"}


async def test_api_responses_carry_the_security_headers(api: Api) -> None:
    response = await api.http.get("/v1/phrases", headers=api.as_("alice"))
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["cache-control"] == "no-store"


async def test_the_docs_page_may_load_its_scripts(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


PREFLIGHT = {
    "Origin": "https://admin.example.com",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_cors_is_closed_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/v1/phrases", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


@pytest.fixture
async def cors_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        settings.model_copy(update={"cors_origins": "https://admin.example.com"})
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_named_origin_may_call_and_no_other(cors_client: httpx.AsyncClient) -> None:
    allowed = await cors_client.options("/v1/phrases", headers=PREFLIGHT)
    assert allowed.headers["access-control-allow-origin"] == "https://admin.example.com"
    other = await cors_client.options(
        "/v1/phrases", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
