"""PostgreSQL goes away in the middle of a request, after part of it reached the database (a TCP
proxy between the service and PostgreSQL resets every connection just before the request's audit
event is inserted, or just before its COMMIT): the request is a clear 503, nothing of it is
written, a delivery request's phrase is never spoken, and once the database is back the audit
chain verifies, also after new writes (the chain head the process remembered from the lost
transaction must not be trusted). tests/kit/test_database_outage.py covers a database that is
already down when the request comes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.kit.serving import serving
from service.settings import Settings
from service.simulator import Simulator, SimulatorConfig
from tests.conftest import backend
from tests.faults.support import FINAL, audit_verifies
from tests.helpers import ADMIN_KEY, Api, assert_problem
from tests.live.conftest import GENEROUS_LIMITS
from tests.live.harness import Live, response_creates, upstream_of, ws_url
from tests.proxy import Proxy

pytestmark = pytest.mark.skipif(
    backend() != "postgresql",
    reason="a SQLite file cannot become unreachable; this runs in the PostgreSQL pass",
)

AUDIT_INSERT = "INSERT INTO audit_events"
COMMIT = "COMMIT"
PHRASE = {"key": "cut", "title": "Cut", "category": "disclosure", "default_locale": "en-US"}


@pytest.fixture
async def cut_live(database_url: str) -> AsyncIterator[tuple[Live, Proxy]]:
    """A service on a real port (the simulator as its upstream) whose every database connection
    goes through a proxy the test can make refuse."""
    url = make_url(database_url)
    async with (
        Proxy(f"{url.host}:{url.port or 5432}") as proxy,
        Simulator(SimulatorConfig(speed=20)) as simulator,
    ):
        proxied = url.set(host="127.0.0.1", port=int(proxy.url.rsplit(":", 1)[1]))
        settings = Settings(
            database_url=proxied.render_as_string(hide_password=False),
            bootstrap_admin_key=SecretStr(ADMIN_KEY),
            auto_migrate=False,
            voicelive_endpoint=simulator.endpoint,
            voicelive_api_key=SecretStr("upstream-key"),
            **GENEROUS_LIMITS,  # type: ignore[arg-type]
        )
        app = create_app(settings)
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            api = await Api.with_keys(http)
            yield Live(app, base_url, api, simulator, "relay"), proxy


@contextlib.contextmanager
def cut_before(live: Live, proxy: Proxy, target: str, when: str) -> Iterator[list[str]]:
    """Once a statement starting with ``target`` has run, make the database unreachable just
    before ``when`` (a statement's start, or COMMIT) on the same connection: what the request
    sent so far reached PostgreSQL, the rest never does. Yields what was cut (to check it was)."""
    engine: AsyncEngine = live.app.state.sessionmaker.kw["bind"]
    armed: list[Any] = []
    cut: list[str] = []

    def refuse(what: str) -> None:
        cut.append(what)
        proxy.refuse()

    def before_statement(conn: Any, _c: Any, statement: str, *_: Any) -> None:
        if cut:
            return
        if conn in armed and statement.lstrip().startswith(when):
            refuse(statement.split("(")[0].strip())
        elif statement.lstrip().startswith(target) and conn not in armed:
            armed.append(conn)
            if when == target:
                refuse(target)

    def before_commit(conn: Any) -> None:
        if not cut and when == COMMIT and conn in armed:
            refuse(COMMIT)

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", before_statement)
    event.listen(sync_engine, "commit", before_commit)
    try:
        yield cut
    finally:
        event.remove(sync_engine, "before_cursor_execute", before_statement)
        event.remove(sync_engine, "commit", before_commit)
        proxy.restore()


def assert_unavailable(response: httpx.Response) -> None:
    problem = assert_problem(response, 503, "database-unavailable")
    assert response.headers["retry-after"] == "5"
    assert "nothing was changed" in problem["detail"]


async def audit_head(live: Live) -> tuple[int, str]:
    verified = await audit_verifies(live)
    return verified["checked"], verified["head_hash"]


@pytest.mark.parametrize("when", [AUDIT_INSERT, COMMIT])
async def test_a_write_cut_off_mid_transaction_is_a_503_and_leaves_nothing(
    cut_live: tuple[Live, Proxy], when: str
) -> None:
    live, proxy = cut_live
    api = live.api
    before = await audit_head(live)
    with cut_before(live, proxy, "INSERT INTO phrases", when) as cut:
        response = await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
    assert cut, "the fault was never injected"
    assert_unavailable(response)

    listed = await api.http.get("/v1/phrases", headers=api.as_("alice"))
    assert listed.json()["items"] == []  # the phrase row that did reach PostgreSQL is gone
    assert await audit_head(live) == before  # no event added, none lost
    # Writes go on, linked to the real head (not the one the lost transaction made).
    again = await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
    assert again.status_code == 201, again.text
    await api.approved_version(PHRASE["key"], {"en-US": "This call is recorded."})
    checked, _ = await audit_head(live)
    assert checked > before[0]


@pytest.mark.parametrize("when", [AUDIT_INSERT, COMMIT])
async def test_an_approval_cut_off_mid_transaction_leaves_the_version_in_review(
    cut_live: tuple[Live, Proxy], when: str
) -> None:
    live, proxy = cut_live
    api = live.api
    await api.create_phrase(PHRASE["key"])
    version = await api.create_version(PHRASE["key"], {"en-US": "This call is recorded."})
    number = version["number"]
    assert (await api.transition(PHRASE["key"], number, "submit", "alice")).status_code == 200
    before = await audit_head(live)
    with cut_before(live, proxy, "UPDATE phrase_versions", when) as cut:
        response = await api.transition(PHRASE["key"], number, "approve", "bob")
    assert cut, "the fault was never injected"
    assert_unavailable(response)

    path = f"/v1/phrases/{PHRASE['key']}/versions/{number}"
    current = await api.http.get(path, headers=api.as_("alice"))
    assert current.json()["status"] == "in_review"
    resolve = await api.http.get(f"/v1/phrases/{PHRASE['key']}/resolve", headers=api.as_("bob"))
    assert resolve.status_code == 404  # nothing approved reaches a caller
    assert await audit_head(live) == before
    retried = await api.transition(PHRASE["key"], number, "approve", "bob")
    assert retried.status_code == 200, retried.text
    await audit_verifies(live)


@pytest.mark.parametrize("when", [AUDIT_INSERT, COMMIT])
async def test_a_delivery_request_cut_off_is_never_spoken(
    cut_live: tuple[Live, Proxy], when: str
) -> None:
    live, proxy = cut_live
    await live.approved_phrase("recording", "This call is recorded.")
    async with live.agent() as agent:
        before = await audit_head(live)
        with cut_before(live, proxy, "INSERT INTO deliveries", when) as cut:
            response = await live.api.http.post(
                f"/v1/sessions/{agent.session_id}/deliveries",
                json={"phrase_key": "recording"},
                headers=live.api.as_("agent-1"),
            )
        assert cut, "the fault was never injected"
        assert_unavailable(response)
        await asyncio.sleep(0.3)  # time enough for a response.create that should not exist
        upstream = upstream_of(live, agent)
        assert response_creates(upstream) == []  # nothing without its record reached a caller
        assert await live.deliveries(agent.session_id) == []
        assert await audit_head(live) == before

        # The session lived through it: the same request now goes through and is spoken.
        retried = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(retried["id"], *FINAL)
        assert record["status"] == "completed"
        assert len(response_creates(upstream)) == 1
    await audit_verifies(live)


async def test_sessions_opened_while_the_database_is_down_are_refused_with_503(
    cut_live: tuple[Live, Proxy],
) -> None:
    """A relay handshake (and an attached session's control handshake) gets the 503 and
    Retry-After an HTTP request gets, before any WebSocket or upstream session opens; not a bare
    500 with an error in the log."""
    live, proxy = cut_live
    agent = live.api.keys["agent-1"]
    registered = await live.api.http.post("/v1/sessions", json={}, headers=live.api.as_("agent-1"))
    assert registered.status_code == 201, registered.text
    control_url = registered.json()["control_url"]
    proxy.refuse()
    async with aiohttp.ClientSession() as http:
        for url in (ws_url(live), control_url):
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(url, headers={"api-key": agent})
            assert caught.value.status == 503, url
            assert caught.value.headers is not None
            assert caught.value.headers["retry-after"] == "5"
    assert live.simulator.sessions == []  # nothing was opened upstream
    proxy.restore()
