"""The database goes away mid-service (PostgreSQL behind a TCP proxy that starts refusing): every
request gets a clear 503 problem with Retry-After, nothing is half-written, and once the database
is back the service answers again with its audit chain intact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from service.app import create_app
from service.kit.errors import database_unreachable
from service.settings import Settings
from tests.conftest import backend
from tests.helpers import ADMIN_KEY, Api
from tests.proxy import Proxy

postgresql_only = pytest.mark.skipif(
    backend() != "postgresql",
    reason="a SQLite file cannot become unreachable; this runs in the PostgreSQL pass",
)

PHRASE = {"key": "outage", "title": "Outage", "category": "disclosure", "default_locale": "en"}


@pytest.fixture
async def through_proxy(database_url: str) -> AsyncIterator[tuple[Api, Proxy]]:
    url = make_url(database_url)
    async with Proxy(f"{url.host}:{url.port or 5432}") as proxy:
        port = proxy.url.rsplit(":", 1)[1]
        proxied = url.set(host="127.0.0.1", port=int(port))
        settings = Settings(
            database_url=proxied.render_as_string(hide_password=False),
            bootstrap_admin_key=SecretStr(ADMIN_KEY),
            auto_migrate=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield await Api.with_keys(http), proxy


@postgresql_only
async def test_requests_during_an_outage_get_503_and_change_nothing(
    through_proxy: tuple[Api, Proxy],
) -> None:
    api, proxy = through_proxy
    before = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert before.status_code == 200
    head_before = before.json()["head_hash"]

    proxy.refuse()
    for method, path, who, body in (
        ("POST", "/v1/phrases", "alice", PHRASE),
        ("GET", "/v1/phrases", "alice", None),
        ("GET", "/v1/audit/verify", "audrey", None),
    ):
        response = await api.http.request(method, path, json=body, headers=api.as_(who))
        assert response.status_code == 503, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"] == "5"
        problem = response.json()
        assert problem["type"].endswith("/database-unavailable")
        assert "nothing was changed" in problem["detail"]

    proxy.restore()
    listed = await api.http.get("/v1/phrases", headers=api.as_("alice"))
    assert listed.status_code == 200
    assert [p["key"] for p in listed.json()["items"]] == []  # the refused write left nothing
    after = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert after.status_code == 200
    assert after.json()["ok"] is True
    assert after.json()["head_hash"] == head_before  # no event was added, none lost
    created = await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
    assert created.status_code == 201  # and it works again


@pytest.mark.parametrize(
    ("message", "unreachable"),
    [
        ("database is locked", True),
        ("unable to open database file", True),
        ("no such table: audit_events", False),
        ('near "SELEC": syntax error', False),
    ],
)
def test_only_an_unavailable_database_is_a_503(message: str, unreachable: bool) -> None:
    error = sa_exc.OperationalError("SELECT 1", {}, Exception(message))
    assert database_unreachable(error) is unreachable
    assert database_unreachable(ConnectionRefusedError(111, "Connection refused")) is True
