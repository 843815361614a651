"""The caller's voice: server VAD, barge-in, auto truncation, and the turn it commits."""

from __future__ import annotations

from azure.ai.voicelive.models import (
    ResponseCancelledDetails,
    ServerEvent,
    ServerEventConversationItemCreated,
    ServerEventConversationItemTruncated,
    ServerEventInputAudioBufferCommitted,
    ServerEventInputAudioBufferSpeechStarted,
    ServerEventInputAudioBufferSpeechStopped,
    ServerEventResponseAudioDelta,
    ServerEventResponseDone,
    ServerEventSessionUpdated,
)

from service.simulator import Simulator
from service.simulator.config import DEFAULT_GENERATED_REPLY
from tests.simulator.helpers import caller_audio, peer, say, vad

LONG = "Calls are recorded for quality and training purposes, and you may object. " * 3
LOUD = 0.2
QUIET = 0.002  # room noise: under the default threshold of 0.02


async def _play_then_speak(sim: Simulator, **turn_detection: object) -> list[ServerEvent]:
    """Start a long phrase, then the caller talks over it; return what follows."""
    sim.configure(speed=1)
    async with peer(sim) as client:
        await client.send(vad(**turn_detection))
        await client.expect(ServerEventSessionUpdated)
        await client.send(say(LONG))
        for _ in range(10):  # 200 ms of audio heard
            await client.until(ServerEventResponseAudioDelta)
        await client.send(caller_audio(100, level=LOUD))
        seen, _ = await client.until(ServerEventResponseDone)
    return seen


class TestBargeIn:
    async def test_caller_speech_cancels_the_response(self, sim: Simulator) -> None:
        seen = await _play_then_speak(sim, interrupt_response=True)
        kinds = [e.type for e in seen if e.type != "response.audio.delta"]
        assert kinds[0] == "input_audio_buffer.speech_started"
        assert kinds[1:] == [
            "response.audio.done",
            "response.audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        done = seen[-1]
        assert isinstance(done, ServerEventResponseDone)
        assert done.response.status == "cancelled"
        details = done.response.status_details
        assert isinstance(details, ResponseCancelledDetails)
        assert details.reason == "turn_detected"
        started = seen[0]
        assert isinstance(started, ServerEventInputAudioBufferSpeechStarted)
        assert started.audio_start_ms == 0
        assert started.item_id.startswith("item_")

    async def test_auto_truncate_reports_what_was_heard(self, sim: Simulator) -> None:
        seen = await _play_then_speak(sim, interrupt_response=True, auto_truncate=True)
        (truncated,) = [e for e in seen if isinstance(e, ServerEventConversationItemTruncated)]
        done = seen[-1]
        assert isinstance(done, ServerEventResponseDone)
        assert done.response.output is not None
        assert truncated.item_id == done.response.output[0].id
        assert truncated.content_index == 0
        # 200 ms had been sent when the caller spoke; real-time playback means ~that was heard.
        assert 150 <= truncated.audio_end_ms <= 1000
        stored = sim.sessions[-1].conversation.get(truncated.item_id)
        assert stored is not None
        assert stored.truncated_ms == truncated.audio_end_ms

    async def test_without_interrupt_response_the_phrase_plays_on(self, sim: Simulator) -> None:
        sim.configure(speed=20)
        async with peer(sim) as client:
            await client.send(vad(interrupt_response=False))
            await client.expect(ServerEventSessionUpdated)
            await client.send(say(LONG[:60]))  # four seconds of speech, 0.2 s at speed 20
            await client.until(ServerEventResponseAudioDelta)
            await client.send(caller_audio(100, level=LOUD))
            await client.until(ServerEventInputAudioBufferSpeechStarted)
            _, done = await client.until(ServerEventResponseDone, wait=10)
        assert done.response.status == "completed"

    async def test_quiet_audio_does_not_interrupt(self, sim: Simulator) -> None:
        sim.configure(speed=10)
        async with peer(sim) as client:
            await client.send(vad())
            await client.expect(ServerEventSessionUpdated)
            await client.send(say("A short phrase that plays to the end."))
            await client.until(ServerEventResponseAudioDelta)
            await client.send(caller_audio(300, level=QUIET))
            seen, done = await client.until(ServerEventResponseDone)
        assert done.response.status == "completed"
        assert "input_audio_buffer.speech_started" not in [e.type for e in seen]

    async def test_no_turn_detection_means_no_barge_in(self, sim: Simulator) -> None:
        sim.configure(speed=10)
        async with peer(sim) as client:
            await client.send({"type": "session.update", "session": {"turn_detection": None}})
            updated = await client.expect(ServerEventSessionUpdated)
            assert updated.session.turn_detection is None
            await client.send(say("A short phrase that plays to the end."))
            await client.until(ServerEventResponseAudioDelta)
            await client.send(caller_audio(300, level=LOUD))
            _, done = await client.until(ServerEventResponseDone)
        assert done.response.status == "completed"


class TestTurn:
    async def test_silence_ends_the_turn_and_server_vad_answers(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(vad(create_response=True, silence_duration_ms=200))
            await client.expect(ServerEventSessionUpdated)
            await client.send(caller_audio(300, level=LOUD))
            started = await client.expect(ServerEventInputAudioBufferSpeechStarted)
            await client.send(caller_audio(300, level=0))
            stopped = await client.expect(ServerEventInputAudioBufferSpeechStopped)
            committed = await client.expect(ServerEventInputAudioBufferCommitted)
            user_item = await client.expect(ServerEventConversationItemCreated)
            seen, done = await client.until(ServerEventResponseDone)
        assert stopped.audio_end_ms == 500  # 300 ms of speech + 200 ms of silence
        assert started.item_id == stopped.item_id == committed.item_id
        assert user_item.item is not None
        assert user_item.item.id == committed.item_id
        assert user_item.item["role"] == "user"
        assert done.response.status == "completed"
        assert sim.sessions[-1].responses[-1].text == DEFAULT_GENERATED_REPLY
        assert seen[0].type == "response.created"

    async def test_prefix_padding_moves_the_start_back(self, sim: Simulator) -> None:
        async with peer(sim) as client:
            await client.send(vad(prefix_padding_ms=300))
            await client.expect(ServerEventSessionUpdated)
            await client.send(caller_audio(1000, level=0))
            await client.send(caller_audio(100, level=LOUD))
            started = await client.expect(ServerEventInputAudioBufferSpeechStarted)
        assert started.audio_start_ms == 700
        assert sim.sessions[-1].audio_bytes_received == 1100 * 48

    async def test_semantic_vad_interrupts_too(self, sim: Simulator) -> None:
        seen = await _play_then_speak(sim, type="azure_semantic_vad", interrupt_response=True)
        done = seen[-1]
        assert isinstance(done, ServerEventResponseDone)
        assert done.response.status == "cancelled"
