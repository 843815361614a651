"""Audio crosses the relay untouched: the caller's bytes reach Voice Live exactly, and the speech
Voice Live sends reaches the agent exactly, chunk boundaries aside."""

from __future__ import annotations

import base64
import random

import pytest

from service.simulator import SimulatorConfig
from service.simulator.audio import Synthesizer, output_format
from tests.live.harness import Agent, Live, b64, quiet_session, relay_only, until, upstream_of

pytestmark = relay_only

DISCLOSURE = "This call is recorded for quality and training purposes."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=20, record_audio=True)


def audio_by_response(agent: Agent) -> dict[str, bytes]:
    heard: dict[str, bytearray] = {}
    for event in agent.of_type("response.audio.delta"):
        heard.setdefault(event.response_id, bytearray()).extend(event.delta)
    return {k: bytes(v) for k, v in heard.items()}


async def test_caller_audio_reaches_the_upstream_byte_for_byte(live: Live) -> None:
    noise = random.Random(7)
    # Frames of every size an agent sends: 20 ms, odd sizes, a whole second in one event.
    frames = [noise.randbytes(n) for n in (960, 960, 2, 3, 4800, 48000, 1, 960)]
    async with live.agent(session=quiet_session()) as agent:
        for frame in frames:
            await agent.connection.input_audio_buffer.append(audio=b64(frame))
        # Also as raw JSON with the type first, the way some clients write it.
        tail = noise.randbytes(1234)
        await agent.connection.send(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(tail).decode()}
        )
        upstream = upstream_of(live, agent)
        expected = b"".join(frames) + tail
        await until(lambda: len(upstream.received_audio) >= len(expected))
        assert bytes(upstream.received_audio) == expected
        assert upstream.audio_appends == len(frames) + 1
        # Audio frames are never mistaken for control events on the way.
        assert [e["type"] for e in upstream.client_events] == ["session.update"]


async def test_response_audio_reaches_the_agent_byte_for_byte(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    synth = Synthesizer(live.simulator.config.chars_per_second)
    async with live.agent(session=quiet_session()) as agent:
        record = await live.deliver(agent.session_id, "recording", wait=10)
        await agent.connection.response.create()  # the agent's own (generated) reply too
        generated = await agent.next("response.done")
        while generated.response.id == record["response_id"]:
            generated = await agent.next("response.done")
        heard = audio_by_response(agent)
        upstream = upstream_of(live, agent)
    sent = {r.id: r for r in upstream.responses}
    assert set(heard) == set(sent)
    for response_id, audio in heard.items():
        response = sent[response_id]
        assert audio == synth.synthesize(response.text, output_format("pcm16"))
        assert len(audio) == response.audio_bytes_sent
    assert sent[record["response_id"]].text == DISCLOSURE
    # The record's played time is the audio the agent received (PCM16 24 kHz: 48 bytes a ms).
    assert record["played_ms"] == round(len(heard[record["response_id"]]) / 48)
