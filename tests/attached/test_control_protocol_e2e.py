"""The control WebSocket's protocol, spoken by hand over a real socket (no connector): a frame that
breaks it closes that connection with 4002 and nothing else (the session lives on and the next
connection works), numbers are honoured across reconnects, and a newer connection takes over."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from service.connector import protocol as p
from tests.attached.support import session_of
from tests.live.harness import Live, pregenerated_text

TEXT = "This call is recorded."
UPDATED = {"type": "session.updated", "event_id": "evt_1", "session": {"id": "sess_1"}}


async def register(live: Live) -> dict[str, Any]:
    response = await live.api.http.post(
        "/v1/sessions", json={"conversation_key": "call-1"}, headers=live.api.as_("agent-1")
    )
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


@contextlib.asynccontextmanager
async def control(
    live: Live, session: dict[str, Any]
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            session["control_url"], headers={"api-key": live.api.keys["agent-1"]}
        ) as ws,
    ):
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    frame: dict[str, Any] = json.loads(message.data)
    return frame


async def hello(ws: aiohttp.ClientWebSocketResponse, executed: int = 0) -> dict[str, Any]:
    await ws.send_json(p.frame(p.HELLO, executed=executed))
    welcome = await receive(ws)
    assert welcome["op"] == p.WELCOME, welcome
    return welcome


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """The close code and reason the service closed this connection with."""
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE, message
    return ws.close_code, str(message.extra or "")


async def a_delivery_is_commanded(
    live: Live, session_id: str, ws: aiohttp.ClientWebSocketResponse
) -> dict[str, Any]:
    """Request a delivery and read the command it becomes on ``ws``."""
    await live.deliver(session_id, "recording")
    command = await receive(ws)
    assert command["op"] == p.SEND, command
    assert command["event"]["type"] == "response.create"
    assert pregenerated_text(command["event"]) == TEXT
    return command


BROKEN_AFTER_HELLO: dict[str, str | bytes] = {
    "not-json": "this is not json",
    "not-an-object": "[1, 2, 3]",
    "unknown-op": json.dumps({"op": "dance", "seq": 1}),
    "missing-seq": json.dumps({"op": "event", "event": UPDATED}),
    "negative-seq": json.dumps({"op": "event", "seq": -1, "event": UPDATED}),
    "a-seq-skipped": json.dumps({"op": "event", "seq": 2, "event": UPDATED}),
    "event-without-event": json.dumps({"op": "event", "seq": 1}),
    "done-without-command": json.dumps({"op": "done", "seq": 1}),
    "audio-without-bytes": json.dumps({"op": "audio", "seq": 1, "bytes": "many"}),
    "binary-frame": json.dumps({"op": "event", "seq": 1, "event": UPDATED}).encode(),
}


@pytest.mark.parametrize("frame", BROKEN_AFTER_HELLO.values(), ids=BROKEN_AFTER_HELLO.keys())
async def test_a_broken_frame_closes_the_connection_with_4002_and_the_session_lives_on(
    live: Live, frame: str | bytes
) -> None:
    await live.approved_phrase("recording", TEXT)
    session = await register(live)
    async with control(live, session) as ws:
        await hello(ws)
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        code, _ = await closed_with(ws)
    assert code == p.CLOSE_PROTOCOL
    assert (await session_of(live, session["id"]))["state"] == "live"
    async with control(live, session) as ws:
        welcome = await hello(ws)
        assert welcome["received"] == 0  # nothing of the broken frame was taken in
        await a_delivery_is_commanded(live, session["id"], ws)


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"op": "event", "seq": 1, "event": UPDATED}),
        json.dumps({"op": "hello"}),
        json.dumps({"op": "hello", "executed": "none"}),
        "{not json",
    ],
    ids=["not-hello", "hello-without-executed", "hello-with-a-bad-executed", "not-json"],
)
async def test_a_connection_that_does_not_start_with_a_valid_hello_is_closed_with_4002(
    live: Live, first: str
) -> None:
    await live.approved_phrase("recording", TEXT)
    session = await register(live)
    async with control(live, session) as ws:
        await ws.send_str(first)
        code, reason = await closed_with(ws)
    assert code == p.CLOSE_PROTOCOL
    assert "hello" in reason
    async with control(live, session) as ws:
        await hello(ws)
        await a_delivery_is_commanded(live, session["id"], ws)


async def test_numbers_carry_across_reconnects(live: Live) -> None:
    """Reports already processed are skipped, not processed twice; a command not executed is sent
    again on the next connection, one executed is not."""
    await live.approved_phrase("recording", TEXT)
    session = await register(live)
    async with control(live, session) as ws:
        assert (await hello(ws))["received"] == 0
        await ws.send_json(p.frame(p.EVENT, seq=1, event=UPDATED))
        assert await receive(ws) == p.frame(p.ACK, seq=1)
        command = await a_delivery_is_commanded(live, session["id"], ws)
    async with control(live, session) as ws:
        assert (await hello(ws, executed=0))["received"] == 1
        again = await receive(ws)  # not executed: sent again, the same command
        assert again == command
        await ws.send_json(p.frame(p.EVENT, seq=1, event=UPDATED))  # already had it: skipped
        await ws.send_json(p.frame(p.DONE, seq=2, command=command["seq"]))
        assert await receive(ws) == p.frame(p.ACK, seq=2)
    async with control(live, session) as ws:
        assert (await hello(ws, executed=command["seq"]))["received"] == 2
        # Executed: nothing is sent again (a wrong resend would be the first frame here).
        await ws.send_json(p.frame(p.EVENT, seq=3, event=UPDATED))
        assert await receive(ws) == p.frame(p.ACK, seq=3)
    [record] = await live.deliveries(session["id"])
    assert record["status"] == "sent"  # Voice Live never answered: there is none here
    assert record["attempts"] == 1


async def test_a_newer_connection_takes_over_and_the_older_is_closed_with_4000(
    live: Live,
) -> None:
    await live.approved_phrase("recording", TEXT)
    session = await register(live)
    async with control(live, session) as older:
        await hello(older)
        async with control(live, session) as newer:
            await hello(newer)
            code, _ = await closed_with(older)
            assert code == p.CLOSE_REPLACED
            await a_delivery_is_commanded(live, session["id"], newer)
