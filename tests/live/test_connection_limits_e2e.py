"""Per-key limits on live sessions, on a real server: a relay connection over the limit is refused
with 429 and ``Retry-After`` before the WebSocket opens, and nothing of it is made (no upstream
session, no session record, no audit event); other keys are unaffected; after ``Retry-After`` the
key connects again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from service.kit.ratelimit import Limits
from tests.helpers import PROBLEM_JSON
from tests.live.harness import EVENT_TIMEOUT, Live, relay_only, ws_url

pytestmark = relay_only

UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@contextlib.asynccontextmanager
async def relayed(live: Live, key: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A relayed session for ``key``, open past ``session.created``."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(live), headers={"api-key": key}) as ws,
    ):
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"
        yield ws


async def connect_and_close(live: Live, key: str) -> None:
    async with relayed(live, key):
        pass


async def refused(live: Live, key: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The relay's answer to an upgrade request that it refuses: status, headers, problem."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            ws_url(live).replace("ws://", "http://", 1), headers={"api-key": key, **UPGRADE}
        ) as response,
    ):
        assert response.status != 101, "the WebSocket opened"
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, dict(response.headers), body


def assert_too_many(
    status: int, headers: dict[str, str], body: dict[str, Any], slug: str = "rate-limited"
) -> int:
    assert status == 429, body
    assert body["type"] == f"/problems/{slug}"
    seconds = int(headers["Retry-After"])
    assert seconds >= 1
    assert body["retry_after"] == seconds
    return seconds


async def session_records(live: Live) -> list[dict[str, Any]]:
    response = await live.api.http.get("/v1/sessions", headers=live.api.as_("audrey"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def started_events(live: Live) -> list[dict[str, Any]]:
    response = await live.api.http.get(
        "/v1/audit", params={"action": "session.started"}, headers=live.api.as_("audrey")
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestSessionsOpenedPerSecond:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"session_rate_limit_per_second": 1, "session_rate_limit_burst": 2}

    async def test_a_connection_over_the_rate_is_refused_before_the_upgrade(
        self, live: Live
    ) -> None:
        key = live.api.keys["agent-1"]
        for _ in range(2):
            await connect_and_close(live, key)

        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(ws_url(live), headers={"api-key": key})
        assert caught.value.status == 429
        assert caught.value.headers is not None
        assert int(caught.value.headers["Retry-After"]) >= 1
        assert_too_many(*await refused(live, key))

        assert len(live.simulator.sessions) == 2  # no upstream session for the refused ones
        assert len(await session_records(live)) == 2
        assert len(await started_events(live)) == 2

    async def test_another_key_is_unaffected(self, live: Live) -> None:
        for _ in range(2):
            await connect_and_close(live, live.api.keys["agent-1"])
        assert_too_many(*await refused(live, live.api.keys["agent-1"]))
        live.api.keys["agent-2"] = await live.api.new_key("agent-2", ["agent"])

        await connect_and_close(live, live.api.keys["agent-2"])

    async def test_after_retry_after_the_key_connects_again(self, live: Live) -> None:
        key = live.api.keys["agent-1"]
        for _ in range(2):
            await connect_and_close(live, key)
        seconds = assert_too_many(*await refused(live, key))

        await asyncio.sleep(seconds)

        await connect_and_close(live, key)
        assert len(live.simulator.sessions) == 3


class TestLiveSessionsPerKey:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"session_limit_per_key": 2}

    async def test_a_key_holding_its_most_sessions_is_refused_until_one_ends(
        self, live: Live
    ) -> None:
        key = live.api.keys["agent-1"]
        async with relayed(live, key):
            async with relayed(live, key):
                status, headers, body = await refused(live, key)
                assert_too_many(status, headers, body, "session-limit")
                assert "2 live sessions" in body["detail"]
                attach = await live.api.http.post(
                    "/v1/sessions", json={"greeting": "none"}, headers=live.api.as_("agent-1")
                )  # attached sessions count against the same limit
                assert attach.status_code == 429, attach.text
                assert len(live.simulator.sessions) == 2
                assert len(await session_records(live)) == 2

            async with asyncio.timeout(EVENT_TIMEOUT):  # until the ended session is uncounted
                while True:
                    try:
                        await connect_and_close(live, key)
                        break
                    except aiohttp.WSServerHandshakeError as exc:
                        if exc.status != 429:
                            raise
                        await asyncio.sleep(0.05)


class TestUnknownKeysPerAddress:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"auth_failure_limit_per_second": 0.5, "auth_failure_limit_burst": 2}

    async def test_an_address_guessing_keys_at_the_relay_is_slowed(self, live: Live) -> None:
        for _ in range(2):
            status, _, body = await refused(live, "cms_not-a-key-this-service-issued")
            assert status == 401, body

        status, headers, body = await refused(live, "cms_another-guess")

        assert assert_too_many(status, headers, body) == 2
        assert live.simulator.sessions == []


class TestControlChannel:
    async def test_control_channel_handshakes_count_as_requests_of_the_key(
        self, live: Live
    ) -> None:
        made = await live.api.http.post(
            "/v1/sessions", json={"greeting": "none"}, headers=live.api.as_("agent-1")
        )
        assert made.status_code == 201, made.text
        settings = live.app.state.settings.model_copy(
            update={"rate_limit_per_second": 0.5, "rate_limit_burst": 1}
        )
        app_live = live.app.state.live
        live.app.state.limits = Limits.of(settings, lambda sid: app_live.get(sid) is not None)
        await live.api.http.get("/v1/sessions", headers=live.api.as_("agent-1"))  # the one

        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await http.ws_connect(
                    made.json()["control_url"], headers={"api-key": live.api.keys["agent-1"]}
                )

        assert caught.value.status == 429
        assert caught.value.headers is not None
        assert caught.value.headers["Retry-After"] == "2"
