from __future__ import annotations

import hashlib

from tests.live.harness import Live

DISCLOSURE = "This call is recorded for quality and training purposes."


async def test_a_delivery_is_spoken_word_for_word_with_a_verified_transcript(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        queued = await live.deliver(agent.session_id, "recording")
        assert queued["status"] in ("queued", "sent", "started", "speaking")
        done = await agent.next("response.audio_transcript.done")
        assert done.transcript == DISCLOSURE
        record = await live.until_delivery(queued["id"], "completed")
        metrics = (await live.api.http.get("/metrics")).text.splitlines()
        assert "compliance_live_sessions 1" in metrics
        assert 'compliance_deliveries{kind="phrase",status="completed"} 1' in metrics
    assert record["text"] == DISCLOSURE
    assert record["sha256"] == hashlib.sha256(DISCLOSURE.encode()).hexdigest()
    assert record["transcript_verified"] is True
    assert record["response_id"] == done.response_id
    assert record["played_ms"] > 0
    for stamp in ("sent_at", "started_at", "first_audio_at", "ended_at"):
        assert record[stamp] is not None, stamp
