"""Priorities as a caller hears them: append queues after what plays, interrupt cuts it, if_idle
only speaks into silence."""

from __future__ import annotations

from typing import Any

from tests.live.harness import Agent, Live, creates_of, upstream_of

# ~40 s of synthesized speech, 2 s of wall time at speed 20: time enough to act while it plays.
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
SHORT = "This call is recorded."
OTHER = "Your reference number follows."


def index_of(agent: Agent, kind: str, response_id: str) -> int:
    for index, event in enumerate(agent.events):
        if event.type == kind and _response_id(event) == response_id:
            return index
    raise AssertionError(f"no {kind} for {response_id}")


def _response_id(event: Any) -> str | None:
    response = getattr(event, "response", None)
    if response is not None:
        return str(response.id)
    return getattr(event, "response_id", None)


async def phrases(live: Live) -> None:
    await live.approved_phrase("menu", LONG)
    await live.approved_phrase("recording", SHORT)
    await live.approved_phrase("reference", OTHER)


async def test_append_waits_for_the_response_in_progress(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        first = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(first["id"], "speaking")
        second = await live.deliver(agent.session_id, "recording", priority="append")
        a = await live.until_delivery(first["id"], "completed")
        b = await live.until_delivery(second["id"], "completed")
        assert index_of(agent, "response.done", a["response_id"]) < index_of(
            agent, "response.created", b["response_id"]
        )
        transcripts = [e.transcript for e in agent.of_type("response.audio_transcript.done")]
        assert transcripts == [LONG, SHORT]
    assert a["transcript_verified"] is True
    assert b["transcript_verified"] is True
    assert b["started_at"] >= a["ended_at"]


async def test_interrupt_cuts_what_is_playing(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        first = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(first["id"], "speaking")
        urgent = await live.deliver(agent.session_id, "recording", priority="interrupt")
        a = await live.until_delivery(first["id"], "interrupted", "completed", "failed")
        b = await live.until_delivery(urgent["id"], "completed", "failed")
        done = await agent.next("response.done", lambda e: _response_id(e) == a["response_id"])
        assert done.response.status == "cancelled"
        assert index_of(agent, "response.done", a["response_id"]) < index_of(
            agent, "response.created", b["response_id"]
        )
        # The interrupted phrase is not played again (it was interruptible).
        assert len(creates_of(upstream_of(live, agent), LONG)) == 1
    assert a["status"] == "interrupted"
    assert 0 < a["played_ms"] < 40_000
    assert a["failure_reason"] is None
    assert b["status"] == "completed"
    assert b["transcript_verified"] is True


async def test_interrupt_waits_for_a_non_interruptible_phrase(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        first = await live.deliver(agent.session_id, "menu", interruptible=False)
        await live.until_delivery(first["id"], "speaking")
        urgent = await live.deliver(agent.session_id, "recording", priority="interrupt")
        a = await live.until_delivery(first["id"], "completed", "interrupted", "failed")
        b = await live.until_delivery(urgent["id"], "completed", "failed")
    assert a["status"] == "completed"
    assert a["attempts"] == 1
    assert b["status"] == "completed"
    assert b["started_at"] >= a["ended_at"]


async def test_if_idle_is_skipped_at_once_while_something_plays(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        first = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(first["id"], "speaking")
        maybe = await live.deliver(agent.session_id, "recording", priority="if_idle")
        skipped = await live.until_delivery(maybe["id"], "skipped", "completed", within=1.0)
        assert skipped["status"] == "skipped"
        assert (await live.delivery(first["id"]))["status"] == "speaking"  # still playing
        await live.until_delivery(first["id"], "completed")
        assert creates_of(upstream_of(live, agent), SHORT) == []
    assert skipped["attempts"] == 0
    assert skipped["sent_at"] is None
    assert skipped["failure_reason"]


async def test_if_idle_plays_when_the_session_is_idle(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        queued = await live.deliver(agent.session_id, "recording", priority="if_idle")
        record = await live.until_delivery(queued["id"], "completed", "skipped")
        done = await agent.next("response.audio_transcript.done")
    assert record["status"] == "completed"
    assert done.transcript == SHORT
    assert record["transcript_verified"] is True


async def test_appends_play_in_the_order_they_were_requested(live: Live) -> None:
    await phrases(live)
    async with live.agent() as agent:
        ids = [
            (await live.deliver(agent.session_id, key))["id"]
            for key in ("menu", "recording", "reference")
        ]
        records = [await live.until_delivery(i, "completed", within=15) for i in ids]
        transcripts = [e.transcript for e in agent.of_type("response.audio_transcript.done")]
    assert transcripts == [LONG, SHORT, OTHER]
    assert all(r["transcript_verified"] for r in records)
    assert records[0]["ended_at"] <= records[1]["started_at"]
    assert records[1]["ended_at"] <= records[2]["started_at"]
