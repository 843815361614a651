"""The simulator's fault knobs do what the fault tests rely on: ``mute_after_events`` answers
nothing more but keeps reading, ``deaf_after_messages`` stops reading so the client's writes
back up (and ``stop`` still ends at once), ``inject_frames`` arrive as they were given, where
``inject_after_events`` says."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from service.simulator import Simulator, SimulatorConfig

WAIT = 5.0
SAY = {
    "type": "response.create",
    "response": {
        "pre_generated_assistant_message": {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "This call is recorded."}],
        }
    },
}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(SimulatorConfig(speed=0)) as simulator:
        yield simulator


async def received(ws: ClientConnection, *, quiet: float = 0.3) -> list[str | bytes]:
    """Every message until none has come for ``quiet`` seconds."""
    messages: list[str | bytes] = []
    while True:
        try:
            messages.append(await asyncio.wait_for(ws.recv(), quiet))
        except TimeoutError:
            return messages


async def send_forever(ws: ClientConnection, message: str) -> None:
    while True:
        await ws.send(message)


async def receive_forever(ws: ClientConnection) -> None:
    while True:
        await ws.recv()


def types(messages: list[str | bytes]) -> list[Any]:
    return [json.loads(m)["type"] for m in messages]


async def test_a_muted_session_reads_and_handles_everything_and_answers_nothing(
    sim: Simulator,
) -> None:
    sim.configure(mute_after_events=1)
    async with connect(sim.url) as ws:
        assert types([await ws.recv()]) == ["session.created"]
        await ws.send(json.dumps({"type": "session.update", "session": {"voice": "x"}}))
        await ws.send(json.dumps(SAY))
        assert await received(ws) == []
        session = sim.sessions[-1]
        assert [e["type"] for e in session.client_events] == ["session.update", "response.create"]
        assert session.responses[-1].status == "completed"  # played, to nobody
        assert session.events_sent == 1
        assert session.events_muted > 10
        await ws.ping()  # the connection itself is alive


async def test_a_deaf_session_stops_reading_and_the_client_waits(sim: Simulator) -> None:
    sim.configure(deaf_after_messages=1)
    async with connect(sim.url, write_limit=1024) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {}}))
        assert types([await ws.recv()]) == ["session.updated"]  # the one message it read
        second = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 64_000})
        with pytest.raises(TimeoutError):  # the buffers fill; then the client's sends wait
            await asyncio.wait_for(send_forever(ws, second), 3)
        session = sim.sessions[-1]
        assert session.deaf
        assert session.messages_received == 1
        assert session.audio_appends == 0
        began = asyncio.get_running_loop().time()
        await sim.stop()  # cuts it rather than wait for a close it would never read
        assert asyncio.get_running_loop().time() - began < 2
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(receive_forever(ws), WAIT)
    assert session.closed.is_set()


async def test_injected_frames_arrive_as_given_where_asked(sim: Simulator) -> None:
    frames: tuple[str | bytes, ...] = ("not json", b"\x00\xff", '{"type": 42}', "")
    sim.configure(inject_after_events=2, inject_frames=frames)
    async with connect(sim.url) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {}}))
        messages = await received(ws)
        await ws.send(json.dumps(SAY))
        later = await received(ws)
    assert types(messages[:2]) == ["session.created", "session.updated"]
    assert messages[2:] == list(frames)  # text as text, bytes as a binary frame
    assert "response.done" in types(later)  # once only: nothing more is injected
    assert sim.sessions[-1].frames_injected == len(frames)


@pytest.mark.parametrize(
    ("knobs", "problem"),
    [
        ({"mute_after_events": 0}, "mute_after_events must be at least 1"),
        ({"deaf_after_messages": 0}, "deaf_after_messages must be at least 1"),
        ({"inject_after_events": 0}, "inject_after_events must be at least 1"),
        ({"inject_frames": ("x",)}, "inject_frames needs inject_after_events"),
    ],
)
def test_knobs_out_of_range_are_refused(knobs: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SimulatorConfig(**knobs)
