"""An agent's WebSocket message over COMPLIANCE_RELAY_MAX_MESSAGE_BYTES: its connection is closed
with 1009 (message too big), the session ends with that reason, and Voice Live never gets it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.live.harness import EVENT_TIMEOUT, Live, relay_only, until, ws_url

pytestmark = relay_only

LIMIT = 64 * 1024


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"relay_max_message_bytes": LIMIT}


async def test_a_message_over_the_limit_closes_the_agent_with_1009(live: Live) -> None:
    huge = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * LIMIT})
    fits = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (LIMIT - 100)})
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(live), headers={"api-key": live.api.keys["agent-1"]}) as ws,
    ):
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"
        await ws.send_str(fits)  # up to the limit goes through
        await until(lambda: live.simulator.sessions[0].audio_appends == 1)
        await ws.send_str(huge)
        async with asyncio.timeout(EVENT_TIMEOUT):
            while not ws.closed:
                await ws.receive()
        assert ws.close_code == 1009
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:  # the relay ends the session once both sides are closed
            response = await live.api.http.get(
                "/v1/sessions", params={"state": "closed"}, headers=live.api.as_("agent-1")
            )
            if items := response.json()["items"]:
                break
            await asyncio.sleep(0.02)
    [session] = items
    assert "1009" in session["end_reason"]
    assert live.simulator.sessions[0].audio_appends == 1  # the huge one never went upstream
