"""The simulator's pure parts: audio synthesis and codecs, voice activity, event validation."""

from __future__ import annotations

import math
from array import array
from typing import Any

import pytest

from service.simulator.audio import (
    Synthesizer,
    decode_input,
    g711_decode,
    g711_encode,
    input_format,
    output_format,
    rms_level,
)
from service.simulator.client_events import (
    ClientEventError,
    merge_session,
    parse_event,
    parse_response_create,
)
from service.simulator.config import SimulatorConfig
from service.simulator.vad import VoiceActivityDetector


def tone(ms: int, level: float, rate: int = 24000) -> array[int]:
    peak = level * 32767 * math.sqrt(2)
    return array(
        "h", (int(peak * math.sin(2 * math.pi * 300 * i / rate)) for i in range(rate * ms // 1000))
    )


class TestSynthesizer:
    @pytest.mark.parametrize(
        ("fmt", "bytes_per_second"),
        [
            ("pcm16", 48000),
            ("pcm16_16000hz", 32000),
            ("pcm16_8000hz", 16000),
            ("g711_ulaw", 8000),
            ("g711_alaw", 8000),
        ],
    )
    def test_duration_follows_the_text_in_every_format(
        self, fmt: str, bytes_per_second: int
    ) -> None:
        synth = Synthesizer(chars_per_second=15)
        audio = synth.synthesize("a" * 45, output_format(fmt))  # three seconds
        assert len(audio) == 3 * bytes_per_second

    def test_same_text_same_bytes_and_spaces_are_silent(self) -> None:
        fmt = output_format("pcm16")
        one, other = Synthesizer(15), Synthesizer(15)
        assert one.synthesize("Hello world", fmt) == other.synthesize("Hello world", fmt)
        assert not any(one.synthesize("   ", fmt))
        assert one.synthesize("Hello", fmt) != one.synthesize("World", fmt)

    def test_speech_rate_is_a_knob(self) -> None:
        assert len(Synthesizer(30).synthesize("a" * 30, output_format("pcm16"))) == 48000


class TestG711:
    @pytest.mark.parametrize("law", ["g711_ulaw", "g711_alaw"])
    def test_round_trip_keeps_the_signal(self, law: str) -> None:
        samples = tone(20, 0.3)
        decoded = g711_decode(g711_encode(samples, law), law)
        assert len(decoded) == len(samples)
        assert max(abs(a - b) for a, b in zip(samples, decoded, strict=True)) < 700
        assert rms_level(decoded) == pytest.approx(rms_level(samples), rel=0.02)

    def test_known_codes(self) -> None:
        # Silence and full scale, as every G.711 implementation encodes them.
        assert g711_encode(array("h", [0, 32767, -32768]), "g711_ulaw") == bytes([0xFF, 0x80, 0x00])
        assert g711_encode(array("h", [0, 32767, -32768]), "g711_alaw") == bytes([0xD5, 0xAA, 0x2A])


class TestLevel:
    def test_rms_of_a_tone_and_of_silence(self) -> None:
        assert rms_level(tone(100, 0.25)) == pytest.approx(0.25, rel=0.01)
        assert rms_level(array("h", bytes(960))) == 0.0
        assert rms_level(array("h")) == 0.0

    def test_g711_input_is_decoded_for_the_level(self) -> None:
        fmt = input_format("g711_ulaw", 24000)
        audio = g711_encode(tone(100, 0.25, rate=8000), "g711_ulaw")
        assert rms_level(decode_input(audio, fmt)) == pytest.approx(0.25, rel=0.03)


class TestVoiceActivity:
    def test_start_and_stop_in_audio_time(self) -> None:
        vad = VoiceActivityDetector(threshold=0.02)
        feed = {"prefix_padding_ms": 100, "silence_duration_ms": 200}
        assert vad.feed(tone(500, 0.0), 24000, **feed) == []
        (started,) = vad.feed(tone(300, 0.2), 24000, **feed)
        assert (started.kind, started.audio_ms) == ("speech_started", 400)
        assert vad.feed(tone(100, 0.0), 24000, **feed) == []  # a pause, not the end
        assert vad.feed(tone(100, 0.2), 24000, **feed) == []
        (stopped,) = vad.feed(tone(300, 0.0), 24000, **feed)
        assert (stopped.kind, stopped.audio_ms) == ("speech_stopped", 1200)  # 1000 + 200 silent

    def test_odd_sized_chunks_add_up(self) -> None:
        vad = VoiceActivityDetector(threshold=0.02)
        audio = tone(200, 0.0) + tone(200, 0.2)
        found = []
        for start in range(0, len(audio), 333):
            found += vad.feed(
                audio[start : start + 333], 24000, prefix_padding_ms=0, silence_duration_ms=500
            )
        assert [(e.kind, e.audio_ms) for e in found] == [("speech_started", 200)]


class TestClientEvents:
    def test_parse_event_requires_a_typed_object(self) -> None:
        assert parse_event('{"type": "x", "event_id": "e"}') == {"type": "x", "event_id": "e"}
        for raw in ("{", "[]", "{}", '{"type": ""}', '{"type": "x", "event_id": 1}', b"{}"):
            with pytest.raises(ClientEventError):
                parse_event(raw)

    def test_merge_keeps_what_the_update_leaves_out(self) -> None:
        current = {
            "id": "sess_1",
            "voice": "alloy",
            "instructions": "a",
            "turn_detection": {"type": "server_vad"},
        }
        merged = merge_session(
            current, {"instructions": "b", "turn_detection": None, "id": "hijack"}
        )
        assert merged == {
            "id": "sess_1",
            "voice": "alloy",
            "instructions": "b",
            "turn_detection": None,
        }
        assert current["instructions"] == "a"

    @pytest.mark.parametrize(
        "update",
        [
            {"input_audio_sampling_rate": 44100},
            {"modalities": []},
            {"turn_detection": {"type": "server_vad", "threshold": 2}},
            {"turn_detection": {"type": "server_vad", "interrupt_response": "yes"}},
            {"max_response_output_tokens": 0},
            {"voice": 3},
        ],
    )
    def test_merge_refuses_invalid_values(self, update: dict[str, Any]) -> None:
        with pytest.raises(ClientEventError):
            merge_session({}, update)

    def test_response_create_defaults(self) -> None:
        request = parse_response_create({"type": "response.create"}, None)
        assert (request.text, request.metadata, request.cancel_previous) == (None, None, True)

    @pytest.mark.parametrize(
        "metadata",
        [{"k" * 65: "v"}, {"k": "v" * 513}, {"k": 1}, ["k"]],
    )
    def test_metadata_limits(self, metadata: Any) -> None:
        with pytest.raises(ClientEventError) as refused:
            parse_response_create({"response": {"metadata": metadata}}, None)
        assert refused.value.param == "response.metadata"


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="speed"):
        SimulatorConfig(speed=-1)
    with pytest.raises(ValueError, match="drop_after_events"):
        SimulatorConfig(drop_after_events=0)
    assert SimulatorConfig(speed=0).scaled(5) == 0
    assert SimulatorConfig(speed=10).scaled(5) == 0.5
