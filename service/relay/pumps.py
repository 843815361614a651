"""The relay's two directions, each a named task that returns why it ended.

The first direction to end decides; the other is cancelled and awaited, then the side that is
still open is closed with the code and reason of the side that closed. Each send is awaited before
the next receive, so a slow peer slows its sender instead of filling a buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.types import Message, Receive, Send
from starlette.websockets import WebSocket

from service.deliveries.engine import SessionEngine
from service.relay.frames import (
    audio_delta_bytes,
    close_code_for_peer,
    close_reason,
    is_audio_in,
    is_audio_out,
    parse_control,
)

log = logging.getLogger("service.relay")

# Caller audio held back for the greeting: 10 s of 20 ms frames, then backpressure.
HELD_FRAMES = 500
CLOSE_WAIT = 2.0  # seconds a close frame may take to go out
_CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class Stalls:
    """When each direction's send in progress began (None: none is). A peer that stops reading
    makes its sender wait (backpressure, so memory stays bounded); the watchdog ends the session
    once one wait lasts too long."""

    __slots__ = ("to_agent", "to_upstream")

    def __init__(self) -> None:
        self.to_agent: float | None = None
        self.to_upstream: float | None = None


async def watchdog(stalls: Stalls, limit: float) -> Ending:
    while True:
        await asyncio.sleep(min(1.0, limit / 2))
        now = time.monotonic()
        if stalls.to_agent is not None and now - stalls.to_agent > limit:
            return Ending("relay", 1008, f"the agent read nothing for {limit:g} s")
        if stalls.to_upstream is not None and now - stalls.to_upstream > limit:
            return Ending("relay", 1011, f"the upstream read nothing for {limit:g} s")


@dataclass(frozen=True)
class Ending:
    side: str  # "client", "upstream" or "relay": who ended the session
    code: int
    reason: str

    def describe(self) -> str:
        who = {"client": "the agent", "upstream": "the upstream", "relay": "the relay"}[self.side]
        detail = f"{self.code}: {self.reason}" if self.reason else str(self.code)
        return f"{who} closed the connection ({detail})"


async def upstream_to_client(
    upstream: aiohttp.ClientWebSocketResponse, send: Send, engine: SessionEngine, stalls: Stalls
) -> Ending:
    """Upstream to agent. A send to an agent that hung up raises (uvicorn's ClientDisconnected,
    an OSError); ``relay`` reports it as the agent's end."""
    conductor = engine.conductor
    while True:
        message = await upstream.receive()
        kind = message.type
        if kind is aiohttp.WSMsgType.TEXT:
            frame: str = message.data
            stalls.to_agent = time.monotonic()
            await send({"type": "websocket.send", "text": frame})
            stalls.to_agent = None
            # Audio is recognised without a parse; an audio event written in an order the marker
            # does not catch is parsed like a control event and still counted as audio.
            audio = is_audio_out(frame)
            event = None if audio else parse_control(frame)
            if event is not None and event.get("type") == "response.audio.delta":
                audio = True
            if audio:
                if conductor.tracking_audio:
                    await engine.audio(audio_delta_bytes(frame))
            elif event is not None:
                await engine.server_event(event)
            # Hold nothing of the last frame while waiting for the next: an idle session would
            # keep its session.created (several KB, text and parsed) for as long as it lasts.
            del frame, event
        elif kind is aiohttp.WSMsgType.BINARY:
            stalls.to_agent = time.monotonic()
            await send({"type": "websocket.send", "bytes": message.data})
            stalls.to_agent = None
        elif kind in _CLOSING:
            code = upstream.close_code or 1006
            reason = message.extra if isinstance(message.extra, str) else ""
            return Ending("upstream", code, reason or "")
        else:  # ERROR
            return _upstream_error(message.data)
        del message


def _upstream_error(error: object) -> Ending:
    """Why the upstream's socket failed. A message over ``relay_max_message_bytes`` is refused by
    the relay (aiohttp has told the upstream 1009 already), not lost by the upstream; the agent
    gets 1011, since nothing it sent was too big."""
    too_big = aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    if isinstance(error, aiohttp.WebSocketError) and error.code == too_big:
        return Ending("relay", 1011, f"the upstream sent a message over the relay's limit: {error}")
    return Ending("upstream", 1006, "the upstream connection failed")


async def client_to_upstream(
    receive: Receive,
    upstream: aiohttp.ClientWebSocketResponse,
    engine: SessionEngine,
    stalls: Stalls,
) -> Ending:
    """Agent to upstream. While the greeting is going out, caller audio is held back (up to
    ``HELD_FRAMES``, then the agent waits) but control events, such as the ``session.update`` the
    greeting itself waits for, go on; the held audio follows, in order, once the gate opens."""
    gate = engine.audio_gate
    held: list[str] = []
    reading: asyncio.Future[Message] | None = None
    try:
        while True:
            if held:
                reading = reading or asyncio.ensure_future(receive())
                opening = asyncio.ensure_future(engine.caller_audio_allowed())
                either: set[asyncio.Future[Any]] = {reading, opening}
                try:
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    opening.cancel()
                if gate.is_set():
                    await _flush(held, upstream, stalls)
                if not reading.done():
                    continue
                message, reading = reading.result(), None
            else:
                message = await receive()
            if message["type"] == "websocket.disconnect":
                return Ending("client", message.get("code") or 1000, message.get("reason") or "")
            text = message.get("text")
            if text is not None:
                if is_audio_in(text):
                    if not gate.is_set():
                        if len(held) < HELD_FRAMES:
                            held.append(text)
                            continue
                        await engine.caller_audio_allowed()
                    if held:
                        await _flush(held, upstream, stalls)
                else:
                    event = parse_control(text)
                    if event is not None:
                        await engine.client_event(event)
                stalls.to_upstream = time.monotonic()
                await upstream.send_str(text)
            else:
                stalls.to_upstream = time.monotonic()
                await upstream.send_bytes(message.get("bytes") or b"")
            stalls.to_upstream = None
            del message, text  # as upstream_to_client: nothing of the last frame while waiting
    except (ConnectionError, aiohttp.ClientError):
        return Ending("upstream", upstream.close_code or 1006, "the upstream connection was lost")
    finally:
        if reading is not None:
            reading.cancel()


async def _flush(
    held: list[str], upstream: aiohttp.ClientWebSocketResponse, stalls: Stalls
) -> None:
    stalls.to_upstream = time.monotonic()  # the watchdog sees an upstream that stops reading here
    for frame in held:
        await upstream.send_str(frame)
    held.clear()
    stalls.to_upstream = None


async def relay(
    client: WebSocket,
    receive: Receive,
    send: Send,
    upstream: aiohttp.ClientWebSocketResponse,
    engine: SessionEngine,
    stall_limit: float,
) -> Ending:
    """Run both directions until one ends, or one peer stops reading for ``stall_limit``
    seconds; close the other side (or both) accordingly.

    The directions use the ASGI ``receive``/``send`` of the agent's socket directly: Starlette's
    WebSocket wrapper re-checks its state on every frame, which at 100 calls of 50 frames a
    second each way is measurable relay CPU. ``client`` is used for closing only."""
    stalls = Stalls()
    down = asyncio.create_task(
        upstream_to_client(upstream, send, engine, stalls), name="upstream->agent"
    )
    up = asyncio.create_task(
        client_to_upstream(receive, upstream, engine, stalls), name="agent->upstream"
    )
    guard = asyncio.create_task(watchdog(stalls, stall_limit), name="stall watchdog")
    try:
        done, _ = await asyncio.wait({down, up, guard}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (down, up, guard):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    # Both may have ended in the same turn (a hang-up ends both): prefer the one that says why.
    ended = [t for t in (guard, down, up) if t in done]
    first = next((t for t in ended if t.exception() is None), ended[0])
    error = first.exception()
    if error is None:
        ending = first.result()
    elif isinstance(error, OSError | RuntimeError):  # the agent's socket went away mid-send
        ending = Ending("client", 1006, "the agent's connection was lost")
    else:
        log.error("relay direction %s failed", first.get_name(), exc_info=error)
        ending = Ending("relay", 1011, "internal error in the relay")
    code, reason = close_code_for_peer(ending.code), close_reason(ending.reason)
    # Bounded: a peer that stopped reading would never take a close frame either.
    if ending.side != "upstream":
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await upstream.close(code=code, message=reason.encode())
    if ending.side != "client":
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await client.close(code, reason)
    return ending
