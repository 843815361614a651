"""Voice Live sends a message over COMPLIANCE_RELAY_MAX_MESSAGE_BYTES in the middle of a phrase:
the relay refuses it (1009 to the upstream, which is how a WebSocket says "too big"), never
passes it on, and ends the session with a reason that says what happened; the agent is closed
with 1011 (nothing it sent was too big) and the phrase fails with that reason.
tests/live/test_oversized_frames_e2e.py covers an agent's message over the limit."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import until_closed
from tests.faults.support import (
    FINAL,
    audit_verifies,
    logged_errors,
    raw_agent,
)
from tests.live.harness import EVENT_TIMEOUT, Live, relay_only, upstream_of

pytestmark = relay_only

LIMIT = 64 * 1024
HUGE = json.dumps({"type": "response.text.delta", "delta": "A" * LIMIT})
# session.created, then the phrase's response.created ... its first audio delta (the 7th).
MID_PHRASE = 7
TEXT = "This call is recorded for quality and training purposes."


@pytest.fixture(params=["text", "binary"])
def simulator_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    frame = HUGE if request.param == "text" else HUGE.encode()
    return SimulatorConfig(speed=20, inject_after_events=MID_PHRASE, inject_frames=(frame,))


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"relay_max_message_bytes": LIMIT}


async def test_a_message_over_the_limit_from_voice_live_ends_the_session_with_the_reason(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    await live.approved_phrase("recording", TEXT)
    async with raw_agent(live) as agent:
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], *FINAL)
        await agent.closed()
        upstream = upstream_of(live, agent)
    closed = await until_closed(live, agent.session_id)

    why = "the upstream sent a message over the relay's limit"
    assert closed["end_reason"].startswith(f"the relay closed the connection (1011: {why}")
    assert f"limit {LIMIT}" in closed["end_reason"]
    assert agent.ws.close_code == 1011
    assert upstream.frames_injected == 1
    async with asyncio.timeout(EVENT_TIMEOUT):
        await upstream.closed.wait()
    assert upstream._ws.close_code == 1009
    sizes = [len(data) for _, data in agent.frames]
    assert max(sizes) < LIMIT  # the huge one never reached the agent
    assert [kind for kind, _ in agent.frames].count(aiohttp.WSMsgType.BINARY) == 0
    assert record["status"] == "failed"
    assert record["failure_reason"] == (
        f"the session ended before it finished: {closed['end_reason']}"
    )
    assert logged_errors(caplog) == []
    await audit_verifies(live)
