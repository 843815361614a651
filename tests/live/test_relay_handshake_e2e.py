"""Who may open a relayed session, and what a refused agent is told before any WebSocket opens;
the sessions the service lists."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest

from service.simulator import SimulatorConfig
from tests.helpers import PROBLEM_JSON
from tests.live.harness import EVENT_TIMEOUT, Live, agent_with, relay_only, until, ws_url

pytestmark = relay_only


async def refused(
    live: Live, headers: dict[str, str], **query: str
) -> aiohttp.WSServerHandshakeError:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await http.ws_connect(ws_url(live, **query), headers=headers)
    assert caught.value.headers is not None
    assert caught.value.headers["content-type"].startswith(PROBLEM_JSON)
    return caught.value


async def no_sessions(live: Live) -> None:
    response = await live.api.http.get("/v1/sessions", headers=live.api.as_("agent-1"))
    assert response.status_code == 200
    assert response.json()["items"] == []


async def test_a_wrong_key_is_refused_with_401(live: Live) -> None:
    error = await refused(live, {"api-key": "not-a-key"})
    assert error.status == 401
    assert (await refused(live, {})).status == 401  # no key at all
    assert live.simulator.sessions == []
    await no_sessions(live)


async def test_a_refused_agent_is_no_error_in_the_log(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """A refusal is the service working: a flood of them must not page anyone."""
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert (await refused(live, {"api-key": "not-a-key"})).status == 401
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def test_a_key_without_the_agent_role_is_refused_with_403(live: Live) -> None:
    error = await refused(live, {"api-key": live.api.keys["alice"]})
    assert error.status == 403
    assert live.simulator.sessions == []
    await no_sessions(live)


async def test_the_key_may_come_as_a_query_parameter(live: Live) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(live, **{"api-key": live.api.keys["agent-1"]})) as ws,
    ):
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"
    assert "api-key" not in live.simulator.sessions[0].query  # our key never goes upstream


class TestUpstreamRefuses:
    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(speed=20, refuse_connections=True)

    async def test_an_upstream_refusal_is_a_502_that_says_why(self, live: Live) -> None:
        error = await refused(live, {"api-key": live.api.keys["agent-1"]})
        assert error.status == 502
        async with aiohttp.ClientSession() as http:
            body = await plain_get_problem(http, live)
        assert body["status"] == 502
        assert body["type"] == "/problems/upstream-unavailable"
        assert "503" in body["detail"]
        await no_sessions(live)


async def test_an_unreachable_upstream_is_a_502_that_says_why(live: Live) -> None:
    await live.simulator.stop()
    error = await refused(live, {"api-key": live.api.keys["agent-1"]})
    assert error.status == 502
    async with aiohttp.ClientSession() as http:
        body = await plain_get_problem(http, live)
    assert body["type"] == "/problems/upstream-unavailable"
    assert "reached" in body["detail"]
    await no_sessions(live)


async def plain_get_problem(http: aiohttp.ClientSession, live: Live) -> dict[str, Any]:
    """The refusal's body, read by sending the upgrade request as a plain GET."""
    response = await http.get(
        ws_url(live).replace("ws://", "http://", 1),
        headers={
            "api-key": live.api.keys["agent-1"],
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = await response.json(content_type=None)
    return body


# --- the session list ----------------------------------------------------------------------------


async def sessions(live: Live, **params: str) -> list[dict[str, Any]]:
    response = await live.api.http.get(
        "/v1/sessions", params=params, headers=live.api.as_("audrey")
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_sessions_are_listed_filtered_and_found_by_either_id(live: Live) -> None:
    live.api.keys["agent-2"] = await live.api.new_key("agent-2", ["agent"])
    async with agent_with(live, query={"conversation-key": "call-a", "locale": "en-US"}) as ended:
        pass
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            if await sessions(live, state="closed"):
                break
            await asyncio.sleep(0.02)
    async with (
        agent_with(live, query={"conversation-key": "call-b"}) as first,
        agent_with(live, key="agent-2", query={"conversation-key": "call-c"}) as second,
    ):
        live_ids = {s["id"] for s in await sessions(live, state="live")}
        assert live_ids == {first.session_id, second.session_id}
        assert [s["id"] for s in await sessions(live, state="closed")] == [ended.session_id]
        assert [s["id"] for s in await sessions(live, conversation_key="call-b")] == [
            first.session_id
        ]
        assert [s["id"] for s in await sessions(live, principal="agent-2")] == [second.session_id]
        # Newest first.
        assert [s["id"] for s in await sessions(live)] == [
            second.session_id,
            first.session_id,
            ended.session_id,
        ]
        by_voicelive = await live.api.http.get(
            f"/v1/sessions/{first.voicelive_id}", headers=live.api.as_("audrey")
        )
        assert by_voicelive.status_code == 200
        record = by_voicelive.json()
        assert record["id"] == first.session_id
        assert record["voicelive_session_id"] == first.voicelive_id
        assert record["kind"] == "relay"
        assert record["state"] == "live"
        assert record["principal"] == "agent-1"
        assert record["conversation_key"] == "call-b"
        assert record["model"] == "gpt-realtime"
        assert record["ended_at"] is None
    closed = await live.api.http.get(
        f"/v1/sessions/{ended.voicelive_id}", headers=live.api.as_("audrey")
    )
    assert closed.json()["state"] == "closed"
    assert closed.json()["locale"] == "en-US"
    assert closed.json()["end_reason"]
    unknown = await live.api.http.get("/v1/sessions/sess_nope", headers=live.api.as_("audrey"))
    assert unknown.status_code == 404


async def test_an_admin_key_sent_as_bearer_opens_the_relay(live: Live) -> None:
    headers = {"Authorization": f"Bearer {live.api.keys['admin']}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(live), headers=headers) as ws,
    ):
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"
    sessions = (await live.api.http.get("/v1/sessions", headers=live.api.as_("admin"))).json()
    assert [s["principal"] for s in sessions["items"]] == ["admin"]


async def test_a_malformed_locale_is_refused_with_422(live: Live) -> None:
    error = await refused(live, {"api-key": live.api.keys["agent-1"]}, locale="not a locale!")
    assert error.status == 422
    assert live.simulator.sessions == []
    await no_sessions(live)


class TestUpstreamSilent:
    """An upstream that accepts the TCP connection and never answers the handshake."""

    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"upstream_connect_timeout": 0.5}

    async def test_an_upstream_that_never_answers_is_a_502_within_the_timeout(
        self, live: Live
    ) -> None:
        async def answer_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(1)  # then hang up, long after the agent was told
            writer.close()

        silent = await asyncio.start_server(answer_nothing, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        live.app.state.upstream.endpoint = f"http://127.0.0.1:{port}"
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            error = await refused(live, {"api-key": live.api.keys["agent-1"]})
            elapsed = loop.time() - started
            async with aiohttp.ClientSession() as http:
                body = await plain_get_problem(http, live)
        finally:
            silent.close()
        assert error.status == 502
        assert elapsed < 3
        assert "did not answer within 0.5 s" in body["detail"]
        await no_sessions(live)
        upstream = live.app.state.upstream
        assert upstream.late_openings == 2  # the handshake and the plain GET, still waiting
        await until(lambda: upstream.late_openings == 0)  # and settled without a leak
