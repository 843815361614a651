"""A delivery requested while Voice Live has a response in progress that the service did not
start (the agent's own, or one server VAD started): it waits or retries, and is spoken, never
over the other response and never lost."""

from __future__ import annotations

from typing import Any

import pytest

from service.simulator import SimulatorConfig
from tests.live.harness import (
    Agent,
    Live,
    barge_in_session,
    creates_of,
    pcm16_silence,
    pcm16_tone,
    quiet_session,
    send_audio,
    upstream_of,
)

AGENT_TEXT = " ".join(["Let me look that up for you, it will only take a moment."] * 6)
DISCLOSURE = "This call is recorded for quality and training purposes."


@pytest.fixture(params=[True, False], ids=["metadata-echoed", "metadata-not-echoed"])
def simulator_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    # The upstream answers response.create only after a while: a wide window for a collision.
    return SimulatorConfig(speed=20, answer_delay=0.5, echo_metadata=request.param)


def agent_says(text: str, **response: Any) -> dict[str, Any]:
    return {
        "type": "response.create",
        "response": {
            "pre_generated_assistant_message": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
            },
            **response,
        },
    }


def assert_not_spoken_over(live: Live, agent: Agent) -> None:
    """Each response the upstream played ran to its end, one after the other."""
    upstream = upstream_of(live, agent)
    assert [r.status for r in upstream.responses] == ["completed"] * len(upstream.responses)
    opened: str | None = None
    event: Any
    for event in agent.events:
        if event.type == "response.created":
            assert opened is None, f"{event.response.id} started while {opened} played"
            opened = event.response.id
        elif event.type == "response.done":
            assert opened == event.response.id
            opened = None


async def test_a_delivery_waits_for_the_agents_own_pregenerated_response(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent(session=quiet_session()) as agent:
        await agent.connection.send(agent_says(AGENT_TEXT))
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], "completed", "failed", "expired")
        transcripts = [e.transcript for e in agent.of_type("response.audio_transcript.done")]
        assert transcripts == [AGENT_TEXT, DISCLOSURE]
        assert_not_spoken_over(live, agent)
        assert agent.of_type("error") == []  # it waited: never sent into the agent's response
    assert record["status"] == "completed", record
    assert record["transcript_verified"] is True
    assert [a["outcome"] for a in record["attempt_log"]] == ["completed"]


async def test_a_delivery_waits_for_the_agents_bare_response_create(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent(session=quiet_session()) as agent:
        await agent.connection.response.create()
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], "completed", "failed", "expired")
        assert_not_spoken_over(live, agent)
        done = agent.of_type("response.audio_transcript.done")
        assert agent.of_type("error") == []  # it waited: never sent into the agent's response
        assert len(upstream_of(live, agent).responses) == 2
    assert [a["outcome"] for a in record["attempt_log"]] == ["completed"]
    assert record["status"] == "completed", record
    assert done[-1].transcript == DISCLOSURE
    assert record["response_id"] == done[-1].response_id
    assert record["transcript_verified"] is True


async def test_a_collision_with_a_response_server_vad_started_is_retried(live: Live) -> None:
    """The caller's turn ends; server VAD starts a reply that Voice Live announces only later; the
    service's response.create meets it and is refused with
    conversation_already_has_active_response, then tried again once the reply has played."""
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent(session=barge_in_session(create_response=True)) as agent:
        await send_audio(agent, pcm16_tone(300) + pcm16_silence(300))
        await agent.next("input_audio_buffer.speech_stopped")
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], "completed", "failed", "expired")
        upstream = upstream_of(live, agent)
        collided = [
            e
            for e in agent.of_type("error")
            if e.error.code == "conversation_already_has_active_response"
        ]
        assert collided, "the upstream never refused a response.create"
        assert_not_spoken_over(live, agent)
        assert upstream.responses[-1].text == DISCLOSURE
    assert record["status"] == "completed", record
    outcomes = [a["outcome"] for a in record["attempt_log"]]
    assert outcomes[0] == "collided"
    assert outcomes[-1] == "completed"
    assert set(outcomes[:-1]) == {"collided"}
    assert record["attempts"] == len(outcomes)
    assert record["transcript_verified"] is True


@pytest.mark.parametrize("event_id", ["agent-evt-1", None], ids=["with-event-id", "no-event-id"])
async def test_deliveries_go_on_after_the_agents_own_response_create_was_refused(
    live: Live, event_id: str | None
) -> None:
    """The agent asks for a response while one of ours plays (cancel_previous false): Voice Live
    refuses it. That request never becomes a response, so the next delivery must go out as soon
    as ours has ended, not after some timeout (SDK users rarely set an event_id)."""
    await live.approved_phrase("menu", AGENT_TEXT)
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent(session=quiet_session()) as agent:
        first = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(first["id"], "speaking")
        request = agent_says("Sorry, one moment.", cancel_previous=False)
        if event_id is not None:
            request["event_id"] = event_id
        await agent.connection.send(request)
        refused = await agent.next("error")
        assert refused.error.code == "conversation_already_has_active_response"
        await live.until_delivery(first["id"], "completed")
        second = await live.deliver(agent.session_id, "recording")
        # answer_delay is 0.5 s; the response itself ~0.2 s at speed 20.
        record = await live.until_delivery(second["id"], "completed", "failed", within=2.0)
        assert len(creates_of(upstream_of(live, agent), DISCLOSURE)) == 1
    assert record["status"] == "completed"
