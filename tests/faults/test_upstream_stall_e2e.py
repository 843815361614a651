"""Voice Live stalls: it stops answering (the connection stays open, nothing comes back), falls
silent in the middle of a phrase, or stops reading what it is sent. Each delivery still ends in
a recorded final state with the reason, and a session whose upstream stopped reading is ended by
the relay with the reason rather than left to hang."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import session_of, until_closed
from tests.faults.support import (
    FINAL,
    audit_verifies,
)
from tests.live.harness import (
    EVENT_TIMEOUT,
    Agent,
    Live,
    b64,
    pcm16_silence,
    relay_only,
    response_creates,
    upstream_of,
)

ANSWER_TIMEOUT = 0.5
STALL_LIMIT = 1.0
FIRST = "This call is recorded."
SECOND = "Your reference number follows."
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
# An SDK agent's session: session.created, session.updated; then a delivery's response.created,
# output_item.added, conversation.item.created, content_part.added, transcript delta, and its
# first audio delta (the 8th event): from there the phrase is being heard.
CONFIGURED = 2
MID_PHRASE = 8


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"delivery_answer_timeout": ANSWER_TIMEOUT}


class TestUpstreamStopsAnswering:
    """Nothing comes back after the session is configured: every request goes unanswered."""

    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(speed=20, mute_after_events=CONFIGURED)

    async def test_each_delivery_fails_after_the_answer_timeout_and_the_session_stays_up(
        self, live: Live
    ) -> None:
        await live.approved_phrase("first", FIRST)
        await live.approved_phrase("second", SECOND)
        async with live.agent() as agent:
            loop = asyncio.get_running_loop()
            began = loop.time()
            first = await live.deliver(agent.session_id, "first")
            second = await live.deliver(agent.session_id, "second")
            records = [await live.until_delivery(d["id"], *FINAL) for d in (first, second)]
            took = loop.time() - began
            upstream = upstream_of(live, agent)
            assert len(response_creates(upstream)) == 2  # both went out; none was answered
            assert upstream.events_muted > 0
            assert (await session_of(live, agent.session_id))["state"] == "live"
        closed = await until_closed(live, agent.session_id)

        reason = f"no answer from the upstream within {ANSWER_TIMEOUT:g} s"
        for record in records:
            assert record["status"] == "failed"
            assert record["failure_reason"] == reason
            assert record["sent_at"] is not None
            assert record["started_at"] is None
            assert [a["outcome"] for a in record["attempt_log"]] == ["failed"]
        # One after the other, each given its time: the second went out when the first failed.
        assert records[0]["ended_at"] <= records[1]["sent_at"]
        assert 2 * ANSWER_TIMEOUT <= took < 2 * ANSWER_TIMEOUT + 3
        assert closed["end_reason"] in (
            "the agent closed the connection (1000)",  # relay
            "the agent detached (it left the attach block)",  # attached
        )
        await audit_verifies(live)


class TestUpstreamFallsSilentMidPhrase:
    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(speed=20, mute_after_events=MID_PHRASE)

    async def test_the_phrase_fails_with_the_reason_and_what_waits_goes_on(
        self, live: Live
    ) -> None:
        await live.approved_phrase("menu", LONG)
        await live.approved_phrase("first", FIRST)
        async with live.agent() as agent:
            playing = await live.deliver(agent.session_id, "menu")
            waiting = await live.deliver(agent.session_id, "first")
            silenced = await live.until_delivery(playing["id"], *FINAL, within=3)
            after = await live.until_delivery(waiting["id"], *FINAL, within=3)
        assert silenced["status"] == "failed"
        assert "upstream" in silenced["failure_reason"]
        assert silenced["first_audio_at"] is not None
        assert after["status"] == "failed"  # sent, and (still silent) never answered


@relay_only
class TestUpstreamStopsReading:
    """The upstream stops reading its socket while the agent streams caller audio: the relay
    waits instead of buffering, and ends the session once the wait passes the stall limit."""

    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(speed=20, deaf_after_messages=1)  # reads the session.update only

    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"relay_stall_timeout": STALL_LIMIT}

    async def test_the_relay_ends_the_session_with_1011_and_the_reason(self, live: Live) -> None:
        await live.approved_phrase("first", FIRST)
        async with live.agent() as agent:
            upstream = upstream_of(live, agent)
            assert upstream.deaf
            streaming = asyncio.create_task(stream_audio(agent))
            try:
                queued = await live.deliver(agent.session_id, "first")
                record = await live.until_delivery(queued["id"], *FINAL)
                closed = await until_closed(live, agent.session_id)
                await until_agent_closed(agent)
            finally:
                streaming.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await streaming
        why = f"the upstream read nothing for {STALL_LIMIT:g} s"
        assert closed["end_reason"] == f"the relay closed the connection (1011: {why})"
        assert agent.connection._connection.close_code == 1011  # the agent is told it failed
        assert record["status"] == "failed"
        assert record["failure_reason"] == (
            f"the session ended before it finished: {closed['end_reason']}"
        )
        await audit_verifies(live)


async def stream_audio(agent: Agent) -> None:
    """Caller audio as fast as the connection takes it (1 s per append)."""
    second = b64(pcm16_silence(1000))
    while True:
        await agent.connection.input_audio_buffer.append(audio=second)


async def until_agent_closed(agent: Agent) -> None:
    reader = agent._reader
    assert reader is not None
    async with asyncio.timeout(EVENT_TIMEOUT):
        await asyncio.wait({reader})
