"""An attached agent's connector reports audio while a phrase plays, often enough for the service:
it fails a response it hears nothing of for the answer timeout (an upstream fallen silent, see
tests/faults/test_upstream_stall_e2e.py), so a phrase that plays for several times that long must
still be heard of all along. The service names the interval in its ``welcome``."""

from __future__ import annotations

import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import attached_agent
from tests.attached.test_control_protocol_e2e import control, hello, register
from tests.live.harness import Live, upstream_of

ANSWER_TIMEOUT = 0.5
# 44 characters at the simulator's 15 a second: 2.9 s of speech, in real time (speed 1), so
# about six answer timeouts pass between its first audio and its response.done.
PHRASE = "Calls are recorded for quality and training."
PLAYS_MS = round(len(PHRASE) / 15 * 1000)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=1)


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"delivery_answer_timeout": ANSWER_TIMEOUT}


async def test_a_phrase_longer_than_the_answer_timeout_is_heard_to_its_end(live: Live) -> None:
    await live.approved_phrase("recording", PHRASE)
    async with attached_agent(live) as agent:
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(
            queued["id"], "completed", "failed", "interrupted", within=15
        )
        [response] = upstream_of(live, agent).responses
    assert record["status"] == "completed", record["failure_reason"]
    assert record["failure_reason"] is None
    assert record["transcript_verified"] is True
    assert abs(record["played_ms"] - PLAYS_MS) <= 40  # every delta was counted, none twice
    assert response.status == "completed"  # nothing was cancelled


async def test_the_welcome_names_a_quarter_of_the_answer_timeout(live: Live) -> None:
    session = await register(live)
    async with control(live, session) as ws:
        welcome = await hello(ws)
    assert welcome["audio_report_interval"] == ANSWER_TIMEOUT / 4
