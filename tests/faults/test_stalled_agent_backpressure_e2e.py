"""An agent that stops reading while a long phrase streams to it: the relay holds Voice Live
back instead of reading the phrase into memory (what is in flight is what the sockets' kernel
buffers hold, not the process), and ends the session with the reason once the wait passes
COMPLIANCE_RELAY_STALL_TIMEOUT. tests/live/test_stalled_agent_e2e.py covers the ending; this
covers the bound."""

from __future__ import annotations

import asyncio

import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import until_closed
from tests.faults.support import audit_verifies
from tests.live.harness import Live, relay_only
from tests.live.test_stalled_agent_e2e import live_session, open_and_never_read

pytestmark = relay_only

STALL_LIMIT = 1.0
# As long as a phrase may be (COMPLIANCE_MAX_TEXT_CHARS is 4000): ~263 s of speech, 12.6 MB of
# PCM, 16.8 MB as base64 frames.
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 58)
PCM_BYTES_PER_S = 48_000
CHARS_PER_SECOND = 15.0


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    # No pacing: Voice Live sends as fast as it is let, so only backpressure can hold it back.
    return SimulatorConfig(speed=0, chars_per_second=CHARS_PER_SECOND)


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"relay_stall_timeout": STALL_LIMIT}


async def test_a_stalled_agent_holds_voice_live_back_and_is_ended_with_the_reason(
    live: Live,
) -> None:
    await live.approved_phrase("menu", LONG)
    sock = await asyncio.to_thread(open_and_never_read, live)
    try:
        session = await live_session(live)
        delivery = await live.deliver(session["id"], "menu")
        ended = await until_closed(live, session["id"], within=30)
        record = await live.until_delivery(delivery["id"], "failed", "completed")
    finally:
        sock.close()
    [upstream] = live.simulator.sessions
    [response] = upstream.responses
    phrase = len(LONG) / CHARS_PER_SECOND * PCM_BYTES_PER_S
    # Unbounded buffering would have taken all of it at once. Here about 4.7 MB of PCM left
    # Voice Live (6.3 MB of frames, all in kernel socket buffers); the relay itself holds at most
    # a frame or two per direction (aiohttp's and uvicorn's 64 KiB flow-control limits).
    assert response.audio_bytes_sent < 0.6 * phrase, (response.audio_bytes_sent, phrase)
    assert response.status != "completed"
    assert ended["end_reason"] == (
        f"the relay closed the connection (1008: the agent read nothing for {STALL_LIMIT:g} s)"
    )
    assert record["status"] == "failed"
    assert ended["end_reason"] in record["failure_reason"]
    await audit_verifies(live)
