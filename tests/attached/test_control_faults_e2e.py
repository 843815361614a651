"""The control channel of an attached session dies for real (a TCP proxy between the connector and
the service resets it, or stalls it) and comes back: nothing the service asked for is lost or
spoken twice, what was requested meanwhile waits and goes out in order, and a channel that stays
away past ``attached_resume_timeout`` ends the session with the reason."""

from __future__ import annotations

import asyncio

import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import (
    attached_agent,
    session_of,
    until_channel,
    until_closed,
)
from tests.helpers import assert_problem
from tests.live.harness import Live, creates_of, response_creates, upstream_of
from tests.proxy import Proxy

# ~41 s of synthesized speech: ~4 s of wall time at speed 10, time to cut and restore mid-phrase.
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
FIRST = "This call is recorded."
SECOND = "Your reference number follows."
THIRD = "Thank you for waiting."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=10)


@pytest.mark.parametrize("restored", ["while-speaking", "after-it-ended"])
async def test_a_phrase_playing_when_the_channel_is_cut_completes_once_restored(
    live: Live, restored: str
) -> None:
    await live.approved_phrase("menu", LONG)
    async with Proxy(live.base_url) as proxy, attached_agent(live, service_url=proxy.url) as agent:
        queued = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(queued["id"], "speaking")
        connections = proxy.forwarded
        proxy.cut()
        await until_channel(live, agent.session_id, up=False)
        if restored == "while-speaking":
            await asyncio.sleep(1.0)
            assert agent.of_type("response.done") == [], "the phrase should still be playing"
        else:
            # The caller heard it all while the service heard nothing: it cannot know yet.
            await agent.next("response.done")
            assert (await live.delivery(queued["id"]))["status"] == "speaking"
        proxy.restore()
        record = await live.until_delivery(queued["id"], "completed", "failed", "interrupted")
        upstream = upstream_of(live, agent)
        assert len(creates_of(upstream, LONG)) == 1  # spoken once: not sent again on resume
        assert len(response_creates(upstream)) == 1
        assert [e.transcript for e in agent.of_type("response.audio_transcript.done")] == [LONG]
        assert proxy.forwarded > connections  # the channel did come back through the proxy
    assert record["status"] == "completed"
    assert record["transcript_verified"] is True
    assert record["attempts"] == 1
    assert record["failure_reason"] is None
    assert record["played_ms"] > 30_000  # all of it was heard, the cut counted nothing away


async def test_deliveries_requested_while_the_channel_is_cut_wait_then_go_out_once_in_order(
    live: Live,
) -> None:
    for key, text in (("first", FIRST), ("second", SECOND), ("third", THIRD)):
        await live.approved_phrase(key, text)
    async with Proxy(live.base_url) as proxy, attached_agent(live, service_url=proxy.url) as agent:
        await until_channel(live, agent.session_id, up=True)
        proxy.cut()
        await until_channel(live, agent.session_id, up=False)
        ids = [
            (await live.deliver(agent.session_id, key))["id"]
            for key in ("first", "second", "third")
        ]
        await asyncio.sleep(0.5)
        waiting = [(await live.delivery(delivery_id))["status"] for delivery_id in ids]
        upstream = upstream_of(live, agent)
        assert waiting == ["queued"] * 3
        assert response_creates(upstream) == []  # nothing reached Voice Live meanwhile
        proxy.restore()
        records = [
            await live.until_delivery(delivery_id, "completed", "failed", "expired")
            for delivery_id in ids
        ]
        texts = [FIRST, SECOND, THIRD]
        transcripts = [e.transcript for e in agent.of_type("response.audio_transcript.done")]
        assert transcripts == texts
        assert [len(creates_of(upstream, text)) for text in texts] == [1, 1, 1]
        assert len(response_creates(upstream)) == 3
    assert [r["status"] for r in records] == ["completed"] * 3
    assert all(r["transcript_verified"] is True for r in records)
    assert all(r["attempts"] == 1 for r in records)
    assert records[0]["ended_at"] <= records[1]["started_at"]
    assert records[1]["ended_at"] <= records[2]["started_at"]


async def test_a_command_lost_on_a_stalled_channel_is_sent_again_and_spoken_once(
    live: Live,
) -> None:
    """The service sends the delivery into a channel that looks open but carries nothing; the
    connector never got it. When the dead connection is noticed and replaced, the command goes
    again, and only once."""
    await live.approved_phrase("first", FIRST)
    async with Proxy(live.base_url) as proxy, attached_agent(live, service_url=proxy.url) as agent:
        await until_channel(live, agent.session_id, up=True)
        proxy.blackhole()
        queued = await live.deliver(agent.session_id, "first")
        await live.until_delivery(queued["id"], "sent")
        await asyncio.sleep(0.3)
        upstream = upstream_of(live, agent)
        assert response_creates(upstream) == []
        assert (await live.delivery(queued["id"]))["status"] == "sent"
        proxy.cut()
        proxy.restore()
        record = await live.until_delivery(queued["id"], "completed", "failed")
        await agent.next("response.done")
        assert len(creates_of(upstream, FIRST)) == 1
        assert len(response_creates(upstream)) == 1
    assert record["status"] == "completed"
    assert record["attempts"] == 1
    assert record["transcript_verified"] is True


async def test_reports_lost_on_a_stalled_channel_are_sent_again_and_the_phrase_not_repeated(
    live: Live,
) -> None:
    """The command got through and the phrase played, but every report back was lost: the
    service must learn how it went from the reports sent again, not by speaking it again."""
    await live.approved_phrase("first", FIRST)
    async with Proxy(live.base_url) as proxy, attached_agent(live, service_url=proxy.url) as agent:
        await until_channel(live, agent.session_id, up=True)
        proxy.blackhole(up=True, down=False)
        queued = await live.deliver(agent.session_id, "first")
        await agent.next("response.done")  # the caller heard it all
        assert (await live.delivery(queued["id"]))["status"] == "sent"
        proxy.cut()
        proxy.restore()
        record = await live.until_delivery(queued["id"], "completed", "failed")
        await asyncio.sleep(0.3)  # time for a wrong second send to show
        upstream = upstream_of(live, agent)
        assert len(creates_of(upstream, FIRST)) == 1
        assert [e.transcript for e in agent.of_type("response.audio_transcript.done")] == [FIRST]
    assert record["status"] == "completed"
    assert record["attempts"] == 1
    assert record["transcript_verified"] is True
    assert record["first_audio_at"] is not None


class TestAShortResumeTimeout:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"attached_resume_timeout": 1.0}

    async def test_a_channel_cut_for_longer_ends_the_session_and_expires_what_waits(
        self, live: Live
    ) -> None:
        await live.approved_phrase("first", FIRST)
        async with (
            Proxy(live.base_url) as proxy,
            attached_agent(live, service_url=proxy.url) as agent,
        ):
            await until_channel(live, agent.session_id, up=True)
            proxy.cut()
            await until_channel(live, agent.session_id, up=False)
            waiting = await live.deliver(agent.session_id, "first")
            assert waiting["status"] == "queued"
            session = await until_closed(live, agent.session_id, within=5.0)
            record = await live.until_delivery(waiting["id"], "expired", "completed", "failed")
            # The connector's attempt, held during the cut, now reaches a session that is over.
            proxy.restore()
            late = await live.api.http.post(
                f"/v1/sessions/{agent.session_id}/deliveries",
                json={"phrase_key": "first"},
                headers=live.api.as_("agent-1"),
            )
            assert_problem(late, 409, "session-not-live")
            await asyncio.sleep(0.3)
            assert response_creates(upstream_of(live, agent)) == []
        assert session["state"] == "closed"
        assert session["ended_at"] is not None
        assert "control channel" in session["end_reason"]
        assert "came back" in session["end_reason"]
        assert record["status"] == "expired"
        assert "control channel" in record["failure_reason"]
        assert record["sent_at"] is None

    async def test_cuts_each_shorter_than_the_timeout_never_end_the_session(
        self, live: Live
    ) -> None:
        """Three cuts of 0.6 s (1.8 s down in all, more than the 1 s timeout): each restore
        starts the count afresh."""
        await live.approved_phrase("first", FIRST)
        async with (
            Proxy(live.base_url) as proxy,
            attached_agent(live, service_url=proxy.url) as agent,
        ):
            await until_channel(live, agent.session_id, up=True)
            for _ in range(3):
                proxy.cut()
                await until_channel(live, agent.session_id, up=False)
                await asyncio.sleep(0.6)
                proxy.restore()
                await until_channel(live, agent.session_id, up=True)
            await asyncio.sleep(0.6)  # a stale timer would have run out by now
            assert (await session_of(live, agent.session_id))["state"] == "live"
            queued = await live.deliver(agent.session_id, "first")
            record = await live.until_delivery(queued["id"], "completed", "expired", "failed")
            assert len(creates_of(upstream_of(live, agent), FIRST)) == 1
        assert record["status"] == "completed"


async def test_a_report_the_service_fails_on_ends_the_session_instead_of_looping(
    live: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A defect of the service while it tracks a report (injected here: the only way to have
    one) ends the session with a reason, as the relay does. Before, the connector sent the same
    report again after every reconnect, into the same fault, for as long as the agent lasted."""
    from service.deliveries.engine import SessionEngine

    tracked = SessionEngine.server_event

    async def failing(self: SessionEngine, event: dict[str, object]) -> None:
        if event.get("type") == "response.created":
            raise RuntimeError("a defect")
        await tracked(self, event)

    monkeypatch.setattr(SessionEngine, "server_event", failing)
    await live.approved_phrase("first", FIRST)
    async with Proxy(live.base_url) as proxy, attached_agent(live, service_url=proxy.url) as agent:
        queued = await live.deliver(agent.session_id, "first")
        session = await until_closed(live, agent.session_id)
        assert proxy.forwarded == 1  # the one control connection: no reconnect after it
    assert session["end_reason"] == "internal error in the service while tracking the session"
    record = await live.until_delivery(queued["id"], "failed", "expired", "interrupted")
    assert record["failure_reason"]
    assert "a report could not be processed" in caplog.text  # the operator gets the cause
