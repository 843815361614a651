"""The service's end of an attached session's control channel (protocol: service/connector).

It is the session's transport: the engine's events become numbered ``send`` commands, kept until
the connector says it executed them, so a channel that drops and comes back loses and repeats
nothing. While the channel is down the engine is paused (deliveries wait); if it stays down
longer than ``resume_timeout`` the session ends and what waited expires with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from service.connector import protocol as p
from service.deliveries.conductor import member
from service.deliveries.engine import SessionEngine, TransportClosed
from service.deliveries.tracking import METADATA_KEY

log = logging.getLogger("service.attached")

HELLO_TIMEOUT = 10.0  # seconds a new control connection has to say hello


def audio_report_interval(answer_timeout: float) -> float:
    """How often the connector reports audio while a phrase plays: the engine fails a response
    it hears nothing of for ``answer_timeout``, so several reports fit in that time."""
    return min(answer_timeout / 4, p.AUDIO_REPORT_INTERVAL)


class TrackingFailed(Exception):
    """Processing a valid report raised: a defect of the service, not of the agent."""


class ProtocolViolation(ValueError):
    """A frame from the connector that breaks the protocol."""


class ControlChannel:
    def __init__(
        self,
        session_id: str,
        *,
        resume_timeout: float,
        on_end: Callable[[str], Awaitable[None]],
    ) -> None:
        self.session_id = session_id
        self.engine: SessionEngine | None = None  # set once the engine exists
        self._resume_timeout = resume_timeout
        self._on_end = on_end
        self._outbox: deque[tuple[int, dict[str, Any]]] = deque()  # sent, not yet executed
        self._last_command = 0
        self._received = 0  # the last report processed
        self._socket: WebSocket | None = None
        self._write = asyncio.Lock()  # one writer at a time keeps the commands in order
        # One report at a time, and a takeover between two: a report is processed once even
        # while an older connection's reader is still inside one.
        self._reports = asyncio.Lock()
        # Deliveries whose response.create was handed to the connector but not yet executed:
        # an agent request it reports meanwhile reached the upstream before them.
        self._unexecuted_creates: dict[int, str] = {}
        self._expiry: asyncio.Task[None] | None = None
        self._opened = False
        self.ended = False

    # --- the engine's transport -----------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        if self.ended:
            raise TransportClosed
        async with self._write:
            self._last_command += 1
            self._outbox.append((self._last_command, event))
            delivery = _delivery_of(event)
            if delivery is not None:
                self._unexecuted_creates[self._last_command] = delivery
            if self._socket is not None:
                await self._send(self._socket, p.frame(p.SEND, seq=self._last_command, event=event))
            # Otherwise it goes when the channel is back (resume sends the outbox).

    # --- life -----------------------------------------------------------------------------------

    def wait_for_connector(self) -> None:
        """Start counting: the connector has ``resume_timeout`` to (re)connect."""
        if self._expiry is None and not self.ended:
            self._expiry = asyncio.create_task(self._expire(), name=f"expiry {self.session_id}")

    async def _expire(self) -> None:
        await asyncio.sleep(self._resume_timeout)
        self._expiry = None
        what = "came back" if self._opened else "connected"
        await self.end(
            f"the agent's control channel never {what} within {self._resume_timeout:g} s"
        )

    async def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
        await self._on_end(reason)
        socket = self._socket
        if socket is not None:
            # Only now, with every record written: an agent whose ``attach`` block returned
            # finds its session and deliveries ended.
            async with self._write:
                await self._send(socket, p.frame(p.ACK, seq=self._received))
            await _close(socket, p.CLOSE_ENDED, "the session ended")

    async def serve(self, websocket: WebSocket) -> None:
        """Run one control connection (already accepted) until it closes."""
        assert self.engine is not None
        try:
            hello = await asyncio.wait_for(self._receive(websocket), HELLO_TIMEOUT)
            if hello.get("op") != p.HELLO:
                raise ProtocolViolation("the first frame must be 'hello'")
            executed = p.sequence_number(hello, "executed")
        except (TimeoutError, ValueError, WebSocketDisconnect) as exc:
            await _close(websocket, p.CLOSE_PROTOCOL, f"no valid hello: {exc}"[:120])
            return
        if not await self._take_over(websocket, executed):
            return
        try:
            await self._read(websocket)
        except WebSocketDisconnect:
            pass
        except TrackingFailed as exc:
            # As the relay does: the session ends with a reason rather than the connector
            # resending the same report into the same fault after every reconnect.
            log.error("session %s: a report could not be processed", self.session_id, exc_info=exc)
            await self.end("internal error in the service while tracking the session")
        except ValueError as exc:
            log.warning("session %s: control frame refused: %s", self.session_id, exc)
            await _close(websocket, p.CLOSE_PROTOCOL, str(exc)[:120])
        finally:
            if self._socket is websocket:
                self._socket = None
                if not self.ended:
                    log.warning("session %s: control channel lost; waiting", self.session_id)
                    self.engine.pause()
                    self.wait_for_connector()

    async def _take_over(self, websocket: WebSocket, executed: int) -> bool:
        assert self.engine is not None
        async with self._reports, self._write:
            if self.ended:  # checked under the locks: the expiry may have just run
                await _close(websocket, p.CLOSE_ENDED, "the session ended")
                return False
            previous, self._socket = self._socket, websocket
            if self._expiry is not None:
                self._expiry.cancel()
                self._expiry = None
            self._executed(executed)
            interval = audio_report_interval(self.engine.conductor.answer_timeout)
            welcome = p.frame(p.WELCOME, received=self._received, audio_report_interval=interval)
            await self._send(websocket, welcome)
            for seq, event in self._outbox:  # what it has not executed, in order
                await self._send(websocket, p.frame(p.SEND, seq=seq, event=event))
        if previous is not None:
            await _close(previous, p.CLOSE_REPLACED, "a newer control connection took over")
        if not self._opened:
            self._opened = True
            await self.engine.session_open()
        await self.engine.resume()
        return True

    async def _read(self, websocket: WebSocket) -> None:
        assert self.engine is not None
        while True:
            message = await self._receive(websocket)
            op = message.get("op")
            if op not in p.REPORTS:
                raise ProtocolViolation(f"unknown op {op!r}")
            seq = p.sequence_number(message)
            async with self._reports:
                if self._socket is not websocket:
                    return  # replaced: the newer connection carries the reports now
                if seq <= self._received:
                    continue  # sent again after a reconnect: already processed
                if seq != self._received + 1:
                    raise ProtocolViolation(
                        f"report {seq} follows {self._received}: one is missing"
                    )
                if op == p.END:  # acknowledged once the session has ended (see ``end``)
                    self._received = seq
                    await self.end(_ending(message))
                    return
                carried = _carried(op, message)  # a malformed report is the connector's fault
                try:
                    await self._process(op, carried)
                except Exception as exc:  # a fault of ours: sent again, it would fail again
                    raise TrackingFailed from exc
                self._received = seq
                async with self._write:
                    await self._send(websocket, p.frame(p.ACK, seq=seq))

    async def _process(self, op: str, carried: Any) -> None:
        engine = self.engine
        assert engine is not None
        if op == p.EVENT:
            await engine.server_event(carried)
        elif op == p.CLIENT:
            ahead_of = frozenset(self._unexecuted_creates.values())
            await engine.client_event(carried, ahead_of)
        elif op == p.AUDIO:
            if engine.conductor.tracking_audio:
                await engine.audio(carried)
        elif op == p.DONE:
            self._executed(carried)

    def _executed(self, upto: int) -> None:
        """The connector executed every command up to ``upto``: they need no resending."""
        while self._outbox and self._outbox[0][0] <= upto:
            self._unexecuted_creates.pop(self._outbox.popleft()[0], None)

    @staticmethod
    async def _receive(websocket: WebSocket) -> dict[str, Any]:
        received = await websocket.receive()
        if received["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(received.get("code") or 1000)
        text = received.get("text")
        if text is None:
            raise ProtocolViolation("control frames are JSON text, not binary")
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise ProtocolViolation("a control frame is not JSON") from exc
        if not isinstance(message, dict):
            raise ProtocolViolation("a control frame is not a JSON object")
        return message

    @staticmethod
    async def _send(websocket: WebSocket, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # a lost channel: resume sends it again
            await websocket.send_text(json.dumps(message, separators=(",", ":")))


def _ending(message: dict[str, Any]) -> str:
    """Why an attached session ended, from the connector's ``end``."""
    code, reason = message.get("code"), str(message.get("reason") or "")[:200]
    if code is None:
        return f"the agent detached ({reason})" if reason else "the agent detached"
    detail = f"{code}: {reason}" if reason else str(code)
    if message.get("by") == "agent":
        return f"the agent closed its Voice Live connection ({detail})"
    return f"the upstream closed the agent's Voice Live connection ({detail})"


def _delivery_of(event: dict[str, Any]) -> str | None:
    """The delivery a ``response.create`` of ours speaks, from its metadata."""
    if event.get("type") != "response.create":
        return None
    metadata = member(member(event, "response"), "metadata")
    delivery = metadata.get(METADATA_KEY)
    return delivery if isinstance(delivery, str) else None


def _carried(op: str, message: dict[str, Any]) -> Any:
    """What a report carries (an event, or a number), checked before it is processed."""
    if op in (p.EVENT, p.CLIENT):
        return _event(message)
    try:
        return p.sequence_number(message, "bytes" if op == p.AUDIO else "command")
    except ValueError as exc:
        raise ProtocolViolation(str(exc)) from None


def _event(message: dict[str, Any]) -> dict[str, Any]:
    event = message.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ProtocolViolation(f"the {message.get('op')!r} frame carries no event")
    return event


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.close(code, reason)
