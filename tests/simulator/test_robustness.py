"""Bad input never breaks a session; drops and shutdowns end it cleanly."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from azure.ai.voicelive.models import (
    ServerEventError,
    ServerEventResponseAudioDelta,
    ServerEventResponseCreated,
    ServerEventResponseDone,
    ServerEventSessionUpdated,
)
from websockets.asyncio.client import connect as ws_connect

from service.simulator import Simulator
from tests.simulator.helpers import KEY, peer, say

BAD_EVENTS: list[tuple[dict[str, Any], str, str | None]] = [
    ({"type": "no.such.event"}, "invalid_event_type", "type"),
    ({"type": "session.avatar.connect", "client_sdp": "x"}, "invalid_event_type", "type"),
    ({"type": "session.update", "session": "loud"}, "invalid_value", "session"),
    (
        {"type": "session.update", "session": {"turn_detection": {"type": "psychic"}}},
        "invalid_value",
        "session.turn_detection.type",
    ),
    (
        {"type": "session.update", "session": {"output_audio_format": "mp3"}},
        "invalid_value",
        "session.output_audio_format",
    ),
    ({"type": "response.create", "response": "now"}, "invalid_value", "response"),
    (
        {
            "type": "response.create",
            "response": {
                "pre_generated_assistant_message": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}],
                }
            },
        },
        "invalid_value",
        "response.pre_generated_assistant_message.role",
    ),
    (
        {
            "type": "response.create",
            "response": {
                "pre_generated_assistant_message": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            },
        },
        "invalid_value",
        "response.pre_generated_assistant_message.content",
    ),
    (
        {"type": "response.create", "response": {"cancel_previous": "no"}},
        "invalid_value",
        "response.cancel_previous",
    ),
    ({"type": "input_audio_buffer.append", "audio": "%%%"}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
    (
        {"type": "conversation.item.truncate", "item_id": "x", "content_index": 0},
        "missing_required_parameter",
        "audio_end_ms",
    ),
    ({"type": "conversation.item.create", "item": {"type": "x"}}, "invalid_value", "item.type"),
    ({"type": "response.cancel", "response_id": 7}, "invalid_value", "response_id"),
]


@pytest.mark.parametrize(("event", "code", "param"), BAD_EVENTS)
async def test_a_bad_event_gets_an_error_and_the_session_goes_on(
    sim: Simulator, event: dict[str, Any], code: str, param: str | None
) -> None:
    async with peer(sim) as client:
        await client.send({**event, "event_id": "evt_bad"})
        error = await client.expect(ServerEventError)
        await client.send(say("Still here."))
        _, done = await client.until(ServerEventResponseDone)
    assert error.error.type == "invalid_request_error"
    assert (error.error.code, error.error.param) == (code, param)
    assert error.error.event_id == "evt_bad"
    assert done.response.status == "completed"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"type": 5}', None),
        (b"\x00", None),
    ],
)
async def test_a_malformed_frame_gets_an_error(
    sim: Simulator, frame: str | bytes, code: str | None
) -> None:
    async with ws_connect(sim.url, additional_headers={"api-key": KEY}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(frame)
        error = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "session.update", "session": {}}))
        updated = json.loads(await ws.recv())
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    if code is not None:
        assert error["error"]["code"] == code
    assert updated["type"] == "session.updated"


async def test_an_overlong_pre_generated_text_is_refused_when_capped(sim: Simulator) -> None:
    sim.configure(max_text_chars=10)
    async with peer(sim) as client:
        await client.send(say("Eleven char"))
        error = await client.expect(ServerEventError)
        await client.send(say("Ten chars."))
        _, done = await client.until(ServerEventResponseDone)
    assert error.error.param == "response.pre_generated_assistant_message.content"
    assert done.response.status == "completed"


@pytest.mark.parametrize("abrupt", [False, True])
async def test_drop_after_events_closes_the_connection(sim: Simulator, abrupt: bool) -> None:
    sim.configure(drop_after_events=3, drop_abruptly=abrupt)
    async with peer(sim) as client:  # session.created: event 1
        await client.send({"type": "session.update", "session": {}})  # event 2
        await client.send(say("This is never heard to the end."))  # response.created: event 3
        rest = await client.rest()
    assert [type(e) for e in rest] == [ServerEventSessionUpdated, ServerEventResponseCreated]
    session = sim.sessions[-1]
    async with asyncio.timeout(5):
        await session.closed.wait()
    assert session.events_sent == 3
    assert session.responses[-1].status == "disconnected"


async def test_the_service_side_can_drop_a_session_mid_response(sim: Simulator) -> None:
    sim.configure(speed=1)
    async with peer(sim) as client:
        await client.send(say("A phrase long enough to be cut in the middle of it."))
        await client.until(ServerEventResponseAudioDelta)
        session = sim.sessions[-1]
        session.drop(1011, "upstream failure")
        rest = await client.rest()
    async with asyncio.timeout(5):
        await session.closed.wait()
    assert "response.done" not in [e.type for e in rest]
    assert session.responses[-1].status == "disconnected"


async def test_a_client_leaving_mid_response_stops_the_response(sim: Simulator) -> None:
    sim.configure(speed=1)
    async with peer(sim) as client:
        await client.send(say("A phrase long enough to be cut in the middle of it."))
        await client.until(ServerEventResponseAudioDelta)
    session = sim.sessions[-1]
    async with asyncio.timeout(5):
        await session.closed.wait()
    assert session.active_response is None
    assert session.responses[-1].status == "disconnected"


async def test_stopping_the_simulator_closes_open_sessions(sim: Simulator) -> None:
    async with peer(sim) as client:
        async with asyncio.timeout(5), asyncio.TaskGroup() as group:
            group.create_task(sim.stop())
            rest = group.create_task(client.rest())
        assert rest.result() == []
    assert sim.sessions[-1].closed.is_set()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", sim.port)
