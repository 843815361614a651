"""The caller talks over a phrase: a non-interruptible one is played again until heard whole, an
interruptible one stays interrupted."""

from __future__ import annotations

from tests.live.harness import (
    Live,
    barge_in_session,
    creates_of,
    pcm16_silence,
    pcm16_tone,
    send_audio,
    upstream_of,
)

LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)


async def test_a_non_interruptible_phrase_is_replayed_after_a_barge_in(live: Live) -> None:
    await live.approved_phrase("terms", LONG)
    async with live.agent(session=barge_in_session()) as agent:
        queued = await live.deliver(agent.session_id, "terms", interruptible=False)
        await live.until_delivery(queued["id"], "speaking")
        await send_audio(agent, pcm16_tone(300) + pcm16_silence(400))
        started = await agent.next("input_audio_buffer.speech_started")
        assert started is not None
        cut = await agent.next("response.done")
        assert cut.response.status == "cancelled"
        assert cut.response.status_details.reason == "turn_detected"
        record = await live.until_delivery(queued["id"], "completed", "failed", within=15)
        upstream = upstream_of(live, agent)
        assert len(creates_of(upstream, LONG)) == record["attempts"]
        transcripts = [e.transcript for e in agent.of_type("response.audio_transcript.done")]
        assert transcripts[-1] == LONG
    assert record["status"] == "completed"
    assert record["attempts"] >= 2
    log = record["attempt_log"]
    assert len(log) == record["attempts"]
    assert log[0]["outcome"] == "interrupted"
    assert log[0]["response_id"] == cut.response.id
    assert log[-1]["outcome"] == "completed"
    assert log[-1]["response_id"] == record["response_id"] != cut.response.id
    assert record["transcript_verified"] is True


async def test_a_replay_waits_for_the_caller_to_stop_and_survives_the_vad_reply(
    live: Live,
) -> None:
    """With create_response on (the service default), server VAD answers the caller's turn
    itself; the replay must still go out, and never over that reply."""
    await live.approved_phrase("terms", LONG)
    async with live.agent(session=barge_in_session(create_response=True)) as agent:
        queued = await live.deliver(agent.session_id, "terms", interruptible=False)
        await live.until_delivery(queued["id"], "speaking")
        await send_audio(agent, pcm16_tone(300) + pcm16_silence(400))
        record = await live.until_delivery(queued["id"], "completed", "failed", within=20)
        upstream = upstream_of(live, agent)
        statuses = [(r.text == LONG, r.status) for r in upstream.responses]
        kinds = [(e.type, getattr(getattr(e, "response", None), "id", None)) for e in agent.events]
    assert record["status"] == "completed", record
    assert record["attempt_log"][0]["outcome"] == "interrupted"
    # The replay went out only after the caller stopped speaking.
    stopped = kinds.index(("input_audio_buffer.speech_stopped", None))
    assert stopped < kinds.index(("response.created", record["response_id"]))
    # Server VAD did reply, and every response but the barged-in one played to its end: nothing
    # was cut by the replay.
    assert any(not pre for pre, _ in statuses)
    assert statuses.count((True, "cancelled")) == 1
    assert (True, "completed") in statuses
    assert all(s == "completed" for pre, s in statuses if not pre)


async def test_an_interruptible_phrase_stays_interrupted(live: Live) -> None:
    await live.approved_phrase("menu", LONG)
    async with live.agent(session=barge_in_session()) as agent:
        queued = await live.deliver(agent.session_id, "menu")
        await live.until_delivery(queued["id"], "speaking")
        await send_audio(agent, pcm16_tone(300) + pcm16_silence(400))
        record = await live.until_delivery(queued["id"], "interrupted", "completed", "failed")
        await agent.next("input_audio_buffer.speech_stopped")
        upstream = upstream_of(live, agent)
        assert len(creates_of(upstream, LONG)) == 1
    assert record["status"] == "interrupted"
    assert record["attempts"] == 1
    assert 0 < record["played_ms"] < 40_000
    assert record["attempt_log"][0]["outcome"] == "interrupted"
    assert record["transcript_verified"] is None
