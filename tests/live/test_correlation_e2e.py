"""Whether or not Voice Live echoes response metadata (unverified), every delivery is matched to
its own response: the right response_id, the transcript checked against the right text."""

from __future__ import annotations

from typing import Any

import pytest

from service.simulator import SimulatorConfig
from tests.live.harness import Agent, Live, quiet_session, upstream_of

TEXTS = {
    "recording": "This call is recorded for quality and training purposes.",
    "privacy": "Your personal data is processed under our privacy notice.",
    "closing": "Thank you for calling, goodbye.",
}
AGENT_TEXT = "One moment while I check your account."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=20, echo_metadata=False, answer_delay=0.4)


def transcripts_by_response(agent: Agent) -> dict[str, str]:
    return {e.response_id: e.transcript for e in agent.of_type("response.audio_transcript.done")}


def agent_says(text: str) -> dict[str, Any]:
    return {
        "type": "response.create",
        "response": {
            "pre_generated_assistant_message": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            }
        },
    }


async def phrases(live: Live) -> None:
    for key, text in TEXTS.items():
        await live.approved_phrase(key, text)


async def test_without_echoed_metadata_deliveries_match_their_responses(live: Live) -> None:
    await phrases(live)
    async with live.agent(session=quiet_session()) as agent:
        queued = [await live.deliver(agent.session_id, key) for key in TEXTS]
        records = [await live.until_delivery(q["id"], "completed", "failed") for q in queued]
        heard = transcripts_by_response(agent)
        assert upstream_of(live, agent).responses[0].metadata is not None  # sent, not echoed
        assert all(e.response.metadata is None for e in agent.of_type("response.created"))
    for key, record in zip(TEXTS, records, strict=True):
        assert record["status"] == "completed", record
        assert heard[record["response_id"]] == TEXTS[key]
        assert record["transcript_verified"] is True
    assert len({r["response_id"] for r in records}) == len(records)


async def test_without_echoed_metadata_the_agents_own_responses_are_not_taken_for_ours(
    live: Live,
) -> None:
    await phrases(live)
    async with live.agent(session=quiet_session()) as agent:
        await agent.connection.send(agent_says(AGENT_TEXT))
        first = await live.deliver(agent.session_id, "recording")
        await agent.connection.response.create()  # a generated reply, asked for by the agent
        second = await live.deliver(agent.session_id, "privacy")
        await agent.connection.send(agent_says(AGENT_TEXT))
        third = await live.deliver(agent.session_id, "closing")
        records = [
            await live.until_delivery(q["id"], "completed", "failed", "interrupted", within=15)
            for q in (first, second, third)
        ]
        heard = transcripts_by_response(agent)
        played = [r.text for r in upstream_of(live, agent).responses]
    assert AGENT_TEXT in played
    for key, record in zip(TEXTS, records, strict=True):
        assert record["status"] == "completed", record
        assert heard[record["response_id"]] == TEXTS[key], (key, record["response_id"], heard)
        assert record["transcript_verified"] is True


async def test_without_echoed_metadata_a_delivery_the_agent_cut_off_is_replayed_and_matched(
    live: Live,
) -> None:
    """The agent's response.create (cancel_previous true, the default) lands while a
    non-interruptible delivery is being started: Voice Live cancels ours for it. Ours is played
    again afterwards, and its record names the response that really spoke it."""
    await phrases(live)
    async with live.agent(session=quiet_session()) as agent:
        queued = await live.deliver(agent.session_id, "recording", interruptible=False)
        await live.until_delivery(queued["id"], "sent", "started", "speaking")
        await agent.connection.send(agent_says(AGENT_TEXT))
        record = await live.until_delivery(queued["id"], "completed", "failed", within=15)
        heard = transcripts_by_response(agent)
    assert record["status"] == "completed", record
    assert heard[record["response_id"]] == TEXTS["recording"]
    assert record["transcript_verified"] is True
    assert record["attempts"] >= 2
    assert record["attempt_log"][0]["outcome"] == "interrupted"
    assert AGENT_TEXT in heard.values()
