"""Voice Live drops the connection while a phrase plays: the delivery fails with the reason, the
session ends, and the agent's connection is closed rather than left hanging."""

from __future__ import annotations

import asyncio

import pytest

from service.simulator import SimulatorConfig
from tests.live.harness import EVENT_TIMEOUT, Agent, Live

LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
# session.created, session.updated, then the delivery's response: created, item added, item
# created, part added, transcript delta, then audio deltas; the 12th event is its 5th audio chunk.
DROP_AFTER = 12
ELSEWHERE = "/problems/session-elsewhere"


@pytest.fixture(params=[False, True], ids=["close-frame", "cut-connection"])
def simulator_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    return SimulatorConfig(speed=20, drop_after_events=DROP_AFTER, drop_abruptly=request.param)


async def until_closed(agent: Agent) -> None:
    """The agent's own read loop ends when its connection closes."""
    reader = agent._reader
    assert reader is not None
    async with asyncio.timeout(EVENT_TIMEOUT):
        await asyncio.wait({reader})


async def test_a_drop_mid_delivery_fails_it_and_ends_the_session(live: Live) -> None:
    await live.approved_phrase("menu", LONG)
    async with live.agent() as agent:
        queued = await live.deliver(agent.session_id, "menu")
        record = await live.until_delivery(queued["id"], "failed", "completed", "interrupted")
        await until_closed(agent)
        ws = agent.connection._connection
        assert ws.closed
        assert ws.close_code is not None
        assert ws.close_code != 1000  # not a normal end: the agent can tell it was cut off
        assert agent.of_type("response.audio.delta"), "the phrase had started playing"
        assert agent.of_type("response.done") == []
    assert record["status"] == "failed"
    reason = record["failure_reason"]
    assert "session ended" in reason
    assert "upstream" in reason
    assert record["first_audio_at"] is not None
    assert record["ended_at"] is not None
    assert record["attempt_log"][-1]["outcome"] == "failed"
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            response = await live.api.http.get(
                f"/v1/sessions/{agent.session_id}", headers=live.api.as_("agent-1")
            )
            session = response.json()
            if session["state"] == "closed":
                break
            await asyncio.sleep(0.02)
    assert session["ended_at"] is not None
    assert "upstream" in session["end_reason"]


class TestWhatWaits:
    """Slower audio and a later drop: time to queue a second delivery behind the first."""

    @pytest.fixture(params=[False, True], ids=["close-frame", "cut-connection"])
    def simulator_config(self, request: pytest.FixtureRequest) -> SimulatorConfig:
        # At real-time pacing the 30th event (the 23rd audio chunk) leaves ~440 ms in.
        return SimulatorConfig(speed=1, drop_after_events=30, drop_abruptly=request.param)

    async def test_deliveries_waiting_behind_a_dropped_one_expire(self, live: Live) -> None:
        await live.approved_phrase("menu", LONG)
        await live.approved_phrase("recording", "This call is recorded.")
        async with live.agent() as agent:
            playing = await live.deliver(agent.session_id, "menu")
            await live.until_delivery(playing["id"], "speaking")
            waiting = await live.deliver(agent.session_id, "recording")
            assert waiting["status"] == "queued"
            first = await live.until_delivery(playing["id"], "failed", "completed")
            second = await live.until_delivery(waiting["id"], "expired", "failed", "completed")
            await until_closed(agent)
        assert first["status"] == "failed"
        assert second["status"] == "expired"
        assert "upstream" in second["failure_reason"]
        assert second["sent_at"] is None

    async def test_a_delivery_requested_as_the_session_ends_is_told_it_ended(
        self, live: Live
    ) -> None:
        """Right after the drop, a request must hear that the session ended (409
        session-not-live), never that another replica holds it: there is only this one."""
        await live.approved_phrase("menu", LONG)
        await live.approved_phrase("recording", "This call is recorded.")
        answers: list[tuple[int, str | None]] = []

        async def keep_asking(session_id: str) -> None:
            """Ask until told the session ended (a 201 before that is fine: it expires)."""
            while True:
                response = await live.api.http.post(
                    f"/v1/sessions/{session_id}/deliveries",
                    json={"phrase_key": "recording"},
                    headers=live.api.as_("agent-1"),
                )
                answers.append((response.status_code, response.json().get("type")))
                if response.status_code == 409 and answers[-1][1] != ELSEWHERE:
                    return

        async with live.agent() as agent:
            await live.deliver(agent.session_id, "menu")
            await live.until_delivery(
                agent_first := (await live.deliveries(agent.session_id))[0]["id"], "speaking"
            )
            del agent_first
            async with asyncio.timeout(EVENT_TIMEOUT):
                # Several requests in flight at every moment of the session's end.
                await asyncio.gather(*(keep_asking(agent.session_id) for _ in range(4)))
            await until_closed(agent)
        assert (409, ELSEWHERE) not in answers, answers
        assert answers[-1] == (409, "/problems/session-not-live")
