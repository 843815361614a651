"""response.create as a client sees it through the official SDK: the sequence, the exact text,
the audio, metadata, cancellation and collisions."""

from __future__ import annotations

import asyncio
import time

from azure.ai.voicelive.models import (
    ResponseAudioContentPart,
    ResponseCancelledDetails,
    ResponseMessageItem,
    ResponseTextContentPart,
    ServerEventConversationItemCreated,
    ServerEventError,
    ServerEventResponseAudioDelta,
    ServerEventResponseAudioTranscriptDelta,
    ServerEventResponseAudioTranscriptDone,
    ServerEventResponseCreated,
    ServerEventResponseDone,
    ServerEventResponseTextDone,
    ServerEventSessionUpdated,
)

from service.simulator import Simulator
from service.simulator.audio import Synthesizer, output_format
from service.simulator.config import DEFAULT_GENERATED_REPLY
from tests.simulator.helpers import audio_of, peer, say

DISCLOSURE = "This call is recorded for quality and compliance purposes."
FULL_SEQUENCE_HEAD = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
    "response.audio_transcript.delta",
]
FULL_SEQUENCE_TAIL = [
    "response.audio.done",
    "response.audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
]
PCM16_24K_BYTES_PER_CHAR = 24000 * 2 // 15  # 15 characters per second of speech


class TestPreGeneratedMessage:
    async def test_is_spoken_word_for_word_in_the_full_sequence(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE))
            seen, done = await client.until(ServerEventResponseDone)

        kinds = [e.type for e in seen]
        audio_count = kinds.count("response.audio.delta")
        assert audio_count > 1
        assert kinds == FULL_SEQUENCE_HEAD + ["response.audio.delta"] * audio_count + (
            FULL_SEQUENCE_TAIL
        )
        deltas = [e for e in seen if isinstance(e, ServerEventResponseAudioTranscriptDelta)]
        assert [d.delta for d in deltas] == [DISCLOSURE]  # one delta, the whole text
        (transcript,) = [e for e in seen if isinstance(e, ServerEventResponseAudioTranscriptDone)]
        assert transcript.transcript == DISCLOSURE

        response = done.response
        assert response.status == "completed"
        assert response.status_details is None
        assert response.usage is not None
        assert response.usage.input_tokens == 0
        assert response.output is not None
        (item,) = response.output
        assert isinstance(item, ResponseMessageItem)
        assert item.role == "assistant"
        assert item.status == "completed"
        (part,) = item.content
        assert isinstance(part, ResponseAudioContentPart)
        assert part.transcript == DISCLOSURE

    async def test_ids_tie_the_sequence_together(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE))
            seen, done = await client.until(ServerEventResponseDone)
        created = seen[0]
        assert isinstance(created, ServerEventResponseCreated)
        assert created.response.id == done.response.id
        assert created.response.id is not None
        assert created.response.id.startswith("resp_")
        assert created.response.status == "in_progress"
        assert created.response.output == []
        (item_created,) = [e for e in seen if isinstance(e, ServerEventConversationItemCreated)]
        assert item_created.item is not None
        item_id = item_created.item.id
        for event in seen[1:-1]:
            if "response_id" in event:
                assert event["response_id"] == done.response.id
            if "item_id" in event:
                assert event["item_id"] == item_id

    async def test_audio_is_pcm16_24k_and_lasts_as_long_as_the_text(self, sim: Simulator) -> None:
        short, long = "Hello there.", DISCLOSURE * 2
        async with peer(sim) as client:
            await client.send(say(short))
            short_events, _ = await client.until(ServerEventResponseDone)
            await client.send(say(long))
            long_events, _ = await client.until(ServerEventResponseDone)
        assert len(audio_of(short_events)) == len(short) * PCM16_24K_BYTES_PER_CHAR
        assert len(audio_of(long_events)) == len(long) * PCM16_24K_BYTES_PER_CHAR
        # 20 ms chunks: 960 bytes of PCM16 at 24 kHz, the last one possibly shorter.
        chunks = [e.delta for e in long_events if isinstance(e, ServerEventResponseAudioDelta)]
        assert {len(c) for c in chunks[:-1]} == {960}

    async def test_audio_is_deterministic(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE))
            first, _ = await client.until(ServerEventResponseDone)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE))
            second, _ = await client.until(ServerEventResponseDone)
        assert audio_of(first) == audio_of(second)
        assert audio_of(first) == Synthesizer(15).synthesize(DISCLOSURE, output_format("pcm16"))
        assert any(audio_of(first))  # not silence

    async def test_session_output_format_is_honoured(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(
                {"type": "session.update", "session": {"output_audio_format": "g711_ulaw"}}
            )
            await client.expect(ServerEventSessionUpdated)
            await client.send(say("Fifteen chars!!"))
            seen, done = await client.until(ServerEventResponseDone)
        assert len(audio_of(seen)) == 8000  # one second at 8 kHz, one byte per sample
        assert done.response.output_audio_format == "g711_ulaw"


class TestGeneratedReply:
    async def test_bare_response_create_speaks_the_fixed_reply(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send({"type": "response.create"})
            seen, done = await client.until(ServerEventResponseDone)
        deltas = [e.delta for e in seen if isinstance(e, ServerEventResponseAudioTranscriptDelta)]
        assert len(deltas) > 1  # streamed word by word, as a model would
        assert "".join(deltas) == DEFAULT_GENERATED_REPLY
        assert len(audio_of(seen)) == len(DEFAULT_GENERATED_REPLY) * PCM16_24K_BYTES_PER_CHAR
        assert done.response.status == "completed"
        assert done.response.usage is not None
        assert done.response.usage.input_tokens > 0

    async def test_text_only_session_gets_text_events(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send({"type": "session.update", "session": {"modalities": ["text"]}})
            await client.expect(ServerEventSessionUpdated)
            await client.send(say(DISCLOSURE))
            seen, done = await client.until(ServerEventResponseDone)
        assert not audio_of(seen)
        (text_done,) = [e for e in seen if isinstance(e, ServerEventResponseTextDone)]
        assert text_done.text == DISCLOSURE
        assert done.response.output is not None
        (item,) = done.response.output
        assert isinstance(item, ResponseMessageItem)
        assert isinstance(item.content[0], ResponseTextContentPart)


class TestMetadata:
    async def test_is_echoed_in_created_and_done(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE, metadata={"delivery": "dlv_1"}))
            seen, done = await client.until(ServerEventResponseDone)
        assert isinstance(seen[0], ServerEventResponseCreated)
        assert seen[0].response.metadata == {"delivery": "dlv_1"}
        assert done.response.metadata == {"delivery": "dlv_1"}

    async def test_is_not_echoed_when_the_knob_says_so(self, sim: Simulator) -> None:
        sim.configure(echo_metadata=False)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE, metadata={"delivery": "dlv_1"}))
            seen, done = await client.until(ServerEventResponseDone)
        assert isinstance(seen[0], ServerEventResponseCreated)
        assert seen[0].response.metadata is None
        assert done.response.metadata is None
        assert done.response.status == "completed"

    async def test_too_many_pairs_are_refused(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE, metadata={f"k{i}": "v" for i in range(17)}))
            error = await client.expect(ServerEventError)
        assert error.error.code == "invalid_value"
        assert error.error.param == "response.metadata"


class TestPacing:
    async def test_audio_is_paced_by_the_speed_factor(self, sim: Simulator) -> None:
        sim.configure(speed=10)
        text = "x" * 30  # two seconds of speech: 0.2 s at ten times real time
        async with peer(sim) as client:
            started = time.monotonic()
            await client.send(say(text))
            await client.until(ServerEventResponseDone)
            elapsed = time.monotonic() - started
        assert 0.18 <= elapsed < 1.5

    async def test_answer_delay_holds_response_created_back(self, sim: Simulator) -> None:
        sim.configure(answer_delay=0.2)
        async with peer(sim) as client:
            started = time.monotonic()
            await client.send(say("Hi."))
            await client.expect(ServerEventResponseCreated)
            assert time.monotonic() - started >= 0.19
            await client.until(ServerEventResponseDone)


def _cancelled_reason(done: ServerEventResponseDone) -> str | None:
    details = done.response.status_details
    assert isinstance(details, ResponseCancelledDetails)
    return details.reason


class TestCancel:
    async def test_response_cancel_ends_the_response_as_cancelled(self, sim: Simulator) -> None:
        sim.configure(speed=1)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE * 4))
            await client.until(ServerEventResponseAudioDelta)
            await client.send({"type": "response.cancel"})
            seen, done = await client.until(ServerEventResponseDone)
        assert done.response.status == "cancelled"
        assert _cancelled_reason(done) == "client_cancelled"
        assert [e.type for e in seen if e.type != "response.audio.delta"] == FULL_SEQUENCE_TAIL
        assert done.response.output is not None
        (item,) = done.response.output
        assert isinstance(item, ResponseMessageItem)
        assert item.status == "incomplete"
        session = sim.sessions[-1]
        assert session.responses[-1].status == "cancelled"
        full = len(DISCLOSURE * 4) * PCM16_24K_BYTES_PER_CHAR
        assert 0 < session.responses[-1].audio_bytes_sent < full

    async def test_cancel_before_the_answer_leaves_an_empty_response(self, sim: Simulator) -> None:
        sim.configure(answer_delay=5)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE))
            await client.send({"type": "response.cancel"})
            seen, done = await client.until(ServerEventResponseDone)
        assert [e.type for e in seen] == ["response.created", "response.done"]
        assert done.response.status == "cancelled"
        assert done.response.output == []
        assert _cancelled_reason(done) == "client_cancelled"

    async def test_cancel_with_nothing_playing_is_an_error(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send({"type": "response.cancel", "event_id": "evt_1"})
            error = await client.expect(ServerEventError)
        assert error.error.code == "response_cancel_not_active"
        assert error.error.event_id == "evt_1"


class TestCollision:
    async def test_second_create_without_cancel_previous_is_refused(self, sim: Simulator) -> None:
        sim.configure(speed=5)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE * 4, metadata={"n": "1"}))
            await client.until(ServerEventResponseAudioDelta)
            await client.send(say("Second.", cancel_previous=False, metadata={"n": "2"}))
            _, error = await client.until(ServerEventError)
            assert error.error.code == "conversation_already_has_active_response"
            assert error.error.type == "invalid_request_error"
            # The first response goes on untouched.
            await client.send({"type": "response.cancel"})
            _, done = await client.until(ServerEventResponseDone)
        assert done.response.metadata == {"n": "1"}
        assert [r.text for r in sim.sessions[-1].responses] == [DISCLOSURE * 4]

    async def test_second_create_cancels_the_first_by_default(self, sim: Simulator) -> None:
        sim.configure(speed=5)
        async with peer(sim) as client:
            await client.send(say(DISCLOSURE * 4, metadata={"n": "1"}))
            await client.until(ServerEventResponseAudioDelta)
            await client.send(say("Second.", metadata={"n": "2"}))
            _, first = await client.until(ServerEventResponseDone)
            _, second = await client.until(ServerEventResponseDone)
        assert first.response.metadata == {"n": "1"}
        assert first.response.status == "cancelled"
        assert _cancelled_reason(first) == "client_cancelled"
        assert second.response.metadata == {"n": "2"}
        assert second.response.status == "completed"

    async def test_create_after_done_is_accepted(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            for text in ("One.", "Two."):
                await client.send(say(text, cancel_previous=False))
                _, done = await client.until(ServerEventResponseDone)
                assert done.response.status == "completed"


async def test_every_event_has_a_unique_event_id(sim: Simulator) -> None:
    async with peer(sim) as client:
        await client.send(say(DISCLOSURE))
        await client.until(ServerEventResponseDone)
        await client.send({"type": "response.create"})
        await client.until(ServerEventResponseDone)
    ids = [e.event_id for e in client.events]
    assert all(isinstance(i, str) and i.startswith("event_") for i in ids)
    assert len(set(ids)) == len(ids)


async def test_many_sessions_at_once(sim: Simulator) -> None:
    async def one(n: int) -> str:
        async with peer(sim) as client:
            await client.send(say(f"Phrase number {n}."))
            _, done = await client.until(ServerEventResponseDone)
            assert done.response.output is not None
            part = done.response.output[0]["content"][0]
            return str(part["transcript"])

    async with asyncio.timeout(10):
        transcripts = await asyncio.gather(*(one(n) for n in range(20)))
    assert transcripts == [f"Phrase number {n}." for n in range(20)]
    assert len({s.id for s in sim.sessions}) == 20
