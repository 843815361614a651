"""The connector: an agent's own Voice Live connection, attached to the service.

    async with connect(endpoint=..., credential=..., model=...) as connection:
        async with attach(connection, service_url=URL, api_key=AGENT_KEY,
                          conversation_key="call-42", locale="en-US") as attached:
            await connection.session.update(session=...)
            async for event in attached:      # the agent's own event loop, as before
                ...

The agent's loop stays in charge: events are handed on as they come, and for the few that
delivery tracking needs a copy is queued for the service (audio deltas only as a byte count; no
audio is copied). The agent's control events (its own ``response.create``) are reported as it
sends them. A background task holds the control WebSocket, executes the service's commands on the
connection, and reconnects with backoff; nothing reported or commanded is lost or repeated across
a reconnect (see ``protocol``).

Depends only on the SDK and aiohttp (which the SDK uses), not on the server's packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from service.connector import protocol as p

log = logging.getLogger("service.connector")

BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnects, doubling
STABLE_SECONDS = 5.0  # a connection that lasted this long starts the backoff afresh
WELCOME_TIMEOUT = 10.0
MAX_UNACKED = 10_000  # reports kept for a channel that is down (control events: hours of them)
# Refusals that another attempt cannot change: bad key, not its session, session over.
PERMANENT = frozenset({401, 403, 404, 409, 422})
FINAL_CLOSES = {
    p.CLOSE_ENDED: "the session ended",
    p.CLOSE_REPLACED: "another control connection for this session took over",
    p.CLOSE_PROTOCOL: "it refused a frame (a bug: please report it)",
}

Send = Callable[[Any], Awaitable[None]]


class AttachError(Exception):
    """The service refused to register the session, or could not be reached."""


@contextlib.asynccontextmanager
async def attach(
    connection: Any,
    *,
    service_url: str,
    api_key: str,
    conversation_key: str | None = None,
    locale: str | None = None,
    greeting: str | None = None,
    model: str | None = None,
    voicelive_session_id: str | None = None,
    detach_timeout: float = 5.0,
) -> AsyncIterator[Attached]:
    """Register ``connection`` (an open ``azure.ai.voicelive.aio`` connection) with the service
    and keep it attached until the block ends or the connection closes.

    ``greeting`` names a greeting policy (``"none"``: no greeting; default: the default policy).
    Give ``voicelive_session_id`` if the agent already read ``session.created`` (the session is
    then also found by that id); otherwise the wrapper reports it when it sees the event."""
    attached = Attached(connection, service_url=service_url, api_key=api_key)
    await attached.register(
        conversation_key=conversation_key,
        locale=locale,
        greeting=greeting,
        model=model,
        voicelive_session_id=voicelive_session_id,
    )
    try:
        attached.start()
        yield attached
    finally:
        await attached.detach(wait=detach_timeout)


class Attached:
    """What ``attach`` gives: ``id`` is the service's session id; iterate it for the events."""

    def __init__(self, connection: Any, *, service_url: str, api_key: str) -> None:
        self.connection = connection
        self.id = ""
        self.session: dict[str, Any] = {}
        self._base = service_url.rstrip("/")
        self._headers = {"api-key": api_key}
        self._http: aiohttp.ClientSession | None = None
        self._control_url = ""
        # Reports, numbered; kept until the service acknowledges them.
        self._seq = 0
        self._unacked: deque[dict[str, Any]] = deque()
        self._written = 0  # the last report written on the current control socket
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._executed = 0  # the last command executed
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ended = False  # the end is reported: nothing more to say
        self._over = False  # the service ended the session: no more reconnects
        self.ended_reason: str | None = None  # why the service is no longer told anything
        self._socket_closing: asyncio.Future[Any] | None = None
        # Audio is counted, not copied: the first delta of a response at once (its start), the
        # rest summed until the next report (so the order of events is kept) or until
        # ``_audio_interval`` has passed (so the service hears that a long phrase still plays).
        self._audio_response: object = None
        self._audio_bytes = 0
        self._audio_reported = 0.0  # time.monotonic() of the last audio report
        self._audio_interval = p.AUDIO_REPORT_INTERVAL
        self._original_send: Send = connection.send
        self._original_close: Callable[..., Awaitable[None]] = connection.close

    # --- life -----------------------------------------------------------------------------------

    async def register(self, **fields: str | None) -> None:
        self._http = aiohttp.ClientSession()
        body = {name: value for name, value in fields.items() if value is not None}
        try:
            answer = await self._post_session(body)
        except BaseException:
            await self._http.close()
            raise
        self.session = answer
        self.id, self._control_url = answer["id"], answer["control_url"]

    async def _post_session(self, body: dict[str, str]) -> dict[str, Any]:
        assert self._http is not None
        url = f"{self._base}/v1/sessions"
        try:
            async with self._http.post(url, json=body, headers=self._headers) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, OSError) as exc:
            raise AttachError(f"the service could not be reached at {self._base}: {exc}") from exc
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if status != 201:
            detail = answer.get("detail") if isinstance(answer, dict) else text[:200]
            raise AttachError(f"the service refused the session ({status}): {detail}")
        if not isinstance(answer, dict) or not {"id", "control_url"} <= answer.keys():
            raise AttachError(f"{url} answered 201 without a session: {text[:200]!r}")
        return answer

    def start(self) -> None:
        # Every way the SDK sends (connection.send, connection.response.create, ...) goes
        # through the connection's ``send``: seeing it there shows the agent's own requests.
        self.connection.send = self._send_on_connection
        self.connection.close = self._close_connection  # to tell its close from the upstream's
        self._tasks = [
            asyncio.create_task(self._hold_channel(), name=f"control {self.id}"),
            asyncio.create_task(self._write_reports(), name=f"reports {self.id}"),
        ]

    async def detach(self, *, wait: float) -> None:
        """Say the session is over (unless the connection's close said so), wait up to
        ``wait`` seconds for the service to have it, and let go of the connection."""
        for name in ("send", "close"):  # the class's own methods again
            if name in vars(self.connection):
                delattr(self.connection, name)
        try:
            if not self._ended and self._tasks:
                self._report(p.END, code=None, reason="it left the attach block", by="agent")
            if self._tasks and not self._over:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while self._unacked and not self._over:
                            self._acked.clear()
                            await self._acked.wait()
        finally:
            for task in self._tasks:
                task.cancel()
            for outcome in await asyncio.gather(*self._tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("session %s: the control channel failed", self.id, exc_info=outcome)
            if self._unacked and not self._over:
                log.warning(
                    "session %s: the service did not confirm %d reports before detaching",
                    self.id,
                    len(self._unacked),
                )
            if self._http is not None:
                await self._http.close()

    # --- the agent's events ---------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for event in self.connection:
            self.observe(event)
            yield event
        # The SDK ends the iteration when the connection closed; if the agent closed it, that
        # was reported already.
        socket = getattr(self.connection, "_connection", None)
        self._flush_audio()
        self._report(p.END, code=getattr(socket, "close_code", None) or 1006, by="upstream")

    def observe(self, event: Mapping[str, Any]) -> None:
        """Note one server event (``__aiter__`` does this; call it yourself if you read events
        with ``connection.recv()``)."""
        kind = event.get("type")
        if kind == p.AUDIO_DELTA:
            delta = event.get("delta")
            size = p.base64_decoded_length(delta) if isinstance(delta, str) else 0
            response_id = event.get("response_id")
            if response_id != self._audio_response:
                self._flush_audio()
                self._audio_response = response_id
                self._report_audio(size)
            else:
                self._audio_bytes += size
                if time.monotonic() - self._audio_reported >= self._audio_interval:
                    self._flush_audio()
        elif kind in p.TRACKED_SERVER_EVENTS:
            self._flush_audio()
            self._report(p.EVENT, event=_plain(event))

    async def _send_on_connection(self, event: Any) -> None:
        if isinstance(event, Mapping) and event.get("type") in p.TRACKED_CLIENT_EVENTS:
            self._flush_audio()
            self._report(p.CLIENT, event=_plain(event))
        await self._original_send(event)

    async def _close_connection(self, *, code: int = 1000, reason: str = "") -> None:
        self._flush_audio()
        self._report(p.END, code=code, reason=reason, by="agent")
        await self._original_close(code=code, reason=reason)

    def _flush_audio(self) -> None:
        if self._audio_bytes:
            self._report_audio(self._audio_bytes)
            self._audio_bytes = 0

    def _report_audio(self, size: int) -> None:
        self._audio_reported = time.monotonic()
        self._report(p.AUDIO, bytes=size)

    def _report(self, op: str, **fields: Any) -> None:
        if self._ended or self._over:
            return
        self._ended = op == p.END
        self._seq += 1
        self._unacked.append(p.frame(op, seq=self._seq, **fields))
        if len(self._unacked) > MAX_UNACKED:  # dropping one would break the numbering
            self._give_up(f"{MAX_UNACKED} reports were never confirmed")
        self._wake.set()

    def _give_up(self, why: str) -> None:
        """Stop for good: the service ends the session itself once the channel stays away."""
        if not self._over:
            log.error("session %s: detached from the service: %s", self.id, why)
            self.ended_reason = why
        self._over = True
        self._acked.set()
        if self._socket is not None:
            self._socket_closing = asyncio.ensure_future(self._socket.close())

    # --- the control channel --------------------------------------------------------------------

    async def _hold_channel(self) -> None:
        """Connect, resume, read commands; on a drop, reconnect with backoff."""
        assert self._http is not None
        pause = BACKOFF_FIRST
        while not self._over:
            opened = asyncio.get_running_loop().time()
            try:
                async with self._http.ws_connect(
                    self._control_url, headers=self._headers, autoping=True, heartbeat=10.0
                ) as socket:
                    await self._resume(socket)
                    await self._read_commands(socket)
                    code = socket.close_code
                if code == p.CLOSE_ENDED and self._ended:
                    self._over = True  # the end it reported: done
                elif code in FINAL_CLOSES:
                    self._give_up(f"the service closed the control channel: {FINAL_CLOSES[code]}")
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in PERMANENT:
                    self._give_up(f"the service refused the control channel ({exc.status})")
                else:
                    log.warning("session %s: control channel refused (%s)", self.id, exc.status)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                log.warning("session %s: control channel lost: %r", self.id, exc)
            finally:
                self._socket = None
            if not self._over:
                if asyncio.get_running_loop().time() - opened > STABLE_SECONDS:
                    pause = BACKOFF_FIRST  # it had worked for a while: a fresh fault
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                pause = min(pause * 2, BACKOFF_MAX)
        self._acked.set()  # nobody will acknowledge anything now

    async def _resume(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        await socket.send_str(_dumps(p.frame(p.HELLO, executed=self._executed)))
        message = await socket.receive(timeout=WELCOME_TIMEOUT)
        welcome = json.loads(message.data) if message.type is aiohttp.WSMsgType.TEXT else None
        if not isinstance(welcome, dict) or welcome.get("op") != p.WELCOME:
            raise ValueError(f"expected 'welcome', got {message.type.name} {message.data!r}"[:200])
        received = p.sequence_number(welcome, "received")
        self._audio_interval = p.report_interval(welcome)
        self._acknowledged(received)
        self._socket, self._written = socket, received  # the writer resends what follows
        self._wake.set()

    async def _read_commands(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        async for message in socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            command = json.loads(message.data)
            op = command.get("op")
            if op == p.SEND:
                seq = p.sequence_number(command)
                if seq <= self._executed:
                    continue  # sent again after a reconnect: already done
                try:
                    await self._original_send(command["event"])
                except Exception as exc:  # the connection is closing: its end is reported
                    log.warning("session %s: command %d not sent: %r", self.id, seq, exc)
                self._executed = seq
                self._report(p.DONE, command=seq)
            elif op == p.ACK:
                self._acknowledged(p.sequence_number(command))

    def _acknowledged(self, upto: int) -> None:
        while self._unacked and self._unacked[0]["seq"] <= upto:
            self._unacked.popleft()
        if not self._unacked:
            self._acked.set()

    async def _write_reports(self) -> None:
        """The one writer of reports: in order, each once per control connection."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            socket = self._socket
            if socket is None:
                continue
            for report in list(self._unacked):
                if report["seq"] <= self._written:
                    continue
                try:
                    await socket.send_str(_dumps(report))
                except (aiohttp.ClientError, OSError, RuntimeError):
                    break  # the channel is reconnecting; it resets what was written
                if self._socket is not socket:
                    break
                self._written = report["seq"]


def _plain(event: Mapping[str, Any]) -> dict[str, Any]:
    as_dict = getattr(event, "as_dict", None)
    plain = as_dict() if callable(as_dict) else dict(event)
    return plain if isinstance(plain, dict) else dict(event)


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)
