"""One simulated Voice Live session: the state machine behind one WebSocket connection.

The reader (``run``) handles client events in order; a response plays in its own task so that a
cancel or the caller's voice can interrupt it. Every server event goes through ``_emit``, which
numbers it, stamps a unique ``event_id``, keeps the send order, and drops the connection when the
configuration says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from service.simulator import events
from service.simulator.audio import Synthesizer, decode_input, input_format, output_format
from service.simulator.client_events import (
    ClientEventError,
    ResponseRequest,
    client_event_id,
    decode_audio,
    merge_session,
    optional_str,
    parse_event,
    parse_item,
    parse_response_create,
    require_non_negative_int,
    require_str,
)
from service.simulator.config import SimulatorConfig
from service.simulator.conversation import Conversation
from service.simulator.response import Response, ResponsePlan
from service.simulator.stamps import (
    Latencies,
    ResponseTiming,
    ResponseTimings,
    stamp_of,
    stamped_id,
)
from service.simulator.vad import VoiceActivityDetector

logger = logging.getLogger(__name__)

DEFAULT_VOICE = {"name": "en-US-Ava:DragonHDLatestNeural", "type": "azure-standard"}
SESSION_LIFETIME_S = 30 * 60
NOT_SIMULATED = frozenset(
    {
        "session.avatar.connect",
        "input_audio.turn.start",
        "input_audio.turn.append",
        "input_audio.turn.end",
        "input_audio.turn.cancel",
        "input_audio.clear",
        "input_text.delta",
        "input_text.done",
        "transcription_session.update",
        "mcp_approval_response",
    }
)


class SessionClosed(Exception):
    """The connection is closed or being dropped: nothing more can be sent."""


def initial_session(
    session_id: str, model: str, interrupt_response: bool, now: float
) -> dict[str, Any]:
    """The session ``session.created`` shows: the service's defaults."""
    return {
        "id": session_id,
        "object": "realtime.session",
        "model": model,
        "modalities": ["text", "audio"],
        "instructions": "",
        "voice": dict(DEFAULT_VOICE),
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "input_audio_sampling_rate": 24000,
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "create_response": True,
            "interrupt_response": interrupt_response,
            "auto_truncate": False,
        },
        "input_audio_noise_reduction": None,
        "input_audio_echo_cancellation": None,
        "input_audio_transcription": None,
        "tools": [],
        "tool_choice": "auto",
        "temperature": 0.8,
        "max_response_output_tokens": "inf",
        "expires_at": int(now) + SESSION_LIFETIME_S,
    }


class SimulatorSession:
    """Public attributes are the record tests read: what the client sent, what was answered."""

    def __init__(
        self,
        connection: ServerConnection,
        config: SimulatorConfig,
        synth: Synthesizer,
        *,
        query: Mapping[str, str],
        latencies: Latencies | None = None,
        timings: ResponseTimings | None = None,
    ) -> None:
        self.id = events.new_id("sess")
        self.conversation_id = events.new_id("conv")
        self.config = config
        self.query = dict(query)
        self.model = query.get("model") or config.default_model
        self.session = initial_session(
            self.id, self.model, config.interrupt_response_default, time.time()
        )
        self.conversation = Conversation()
        self.responses: list[Response] = []
        self.client_events: list[dict[str, Any]] = []
        """Every client event but ``input_audio_buffer.append`` (counted below instead)."""
        self.audio_appends = 0
        self.audio_bytes_received = 0
        self.received_audio = bytearray()
        """Caller audio, kept only when ``config.record_audio``."""
        self.events_sent = 0
        self.events_muted = 0
        """Server events not sent because of ``config.mute_after_events``."""
        self.frames_injected = 0
        """Frames of ``config.inject_frames`` sent."""
        self.messages_received = 0
        """Client messages read off the socket, audio included."""
        self.deaf = False
        """Reading stopped (``config.deaf_after_messages``)."""
        self.closed = asyncio.Event()

        self._ws = connection
        self._synth = synth
        self._latencies = latencies if config.stamp_events else None
        self._timings = timings if config.stamp_events else None
        self._received_ns = 0  # when the client event being handled was received
        self._awaiting_audio: dict[str, ResponseTiming] = {}  # by response id
        self._send_lock = asyncio.Lock()
        self._closing = False
        self._active: Response | None = None
        self._active_task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._vad = VoiceActivityDetector(config.vad_threshold)
        self._input_ms = 0.0  # caller audio since the last commit or clear
        self._speech_item_id: str | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "input_audio_buffer.append": self._on_audio_append,
            "input_audio_buffer.commit": self._on_audio_commit,
            "input_audio_buffer.clear": self._on_audio_clear,
            "output_audio_buffer.clear": self._on_output_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.truncate": self._on_item_truncate,
        }

    @property
    def active_response(self) -> Response | None:
        return self._active

    # --- connection -------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; then stop the response in progress."""
        try:
            await self._emit(events.session_created(self.session))
            deaf_after = self.config.deaf_after_messages
            async for message in self._ws:
                self.messages_received += 1
                await self._receive(message)
                if deaf_after is not None and self.messages_received >= deaf_after:
                    # Read nothing more: the client's frames pile up in the socket's buffers
                    # until its writes wait. Only a cut (``drop``) or the client's own
                    # hang-up, noticed when the server stops, ends this.
                    self.deaf = True
                    await self._ws.wait_closed()
                    break
        except (SessionClosed, ConnectionClosed):
            pass
        finally:
            self._closing = True
            task = self._active_task
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])  # a failure was already logged by _play
            if self._closer is not None:
                await asyncio.wait([self._closer])  # the close handshake has its own timeout
            self.closed.set()

    def drop(self, code: int = 1011, reason: str = "", *, abrupt: bool = False) -> None:
        """End the connection from the service side: a close frame, or (abrupt) a cut TCP
        connection, as a network failure would look. Returns at once; ``closed`` tells when the
        session is over (the closing handshake waits for the client, up to a timeout)."""
        if self._closing and self._closer is not None:
            return
        self._closing = True
        if abrupt:
            self._ws.transport.abort()
        elif not self.closed.is_set():
            self._closer = asyncio.create_task(
                self._ws.close(code, reason), name=f"simulator {self.id} close"
            )

    async def _emit(self, event: events.Event) -> None:
        async with self._send_lock:
            if self._closing:
                raise SessionClosed
            if self.config.stamp_events:
                now = time.monotonic_ns()
                event_id = stamped_id(at=now)
                if self._awaiting_audio and event["type"] == "response.audio.delta":
                    timing = self._awaiting_audio.pop(event["response_id"], None)
                    if timing is not None:
                        timing.first_audio_ns = now
            else:
                event_id = events.new_id("event")
            mute_after = self.config.mute_after_events
            if mute_after is not None and self.events_sent >= mute_after:
                self.events_muted += 1
                return
            try:
                await self._ws.send(json.dumps({"event_id": event_id, **event}))
            except ConnectionClosed as exc:
                self._closing = True
                raise SessionClosed from exc
            self.events_sent += 1
            if self.events_sent == self.config.inject_after_events:
                await self._inject()
            limit = self.config.drop_after_events
            if limit is not None and self.events_sent >= limit:
                self.drop(
                    reason=f"simulator: dropped after {limit} events",
                    abrupt=self.config.drop_abruptly,
                )
                raise SessionClosed

    async def _inject(self) -> None:
        """Send ``config.inject_frames`` as they are (called holding the send lock)."""
        for frame in self.config.inject_frames:
            try:
                await self._ws.send(frame)
            except ConnectionClosed as exc:
                self._closing = True
                raise SessionClosed from exc
            self.frames_injected += 1

    async def _receive(self, message: str | bytes) -> None:
        received = self._received_ns = time.monotonic_ns()
        try:
            data = parse_event(message)
        except ClientEventError as exc:
            await self._refuse(exc, None)
            return
        kind = data["type"]
        if kind != "input_audio_buffer.append":
            self.client_events.append(data)
        elif self._latencies is not None and (sent := stamp_of(data.get("event_id"))) is not None:
            self._latencies.add(received - sent)
        handler = self._handlers.get(kind)
        try:
            if handler is None:
                what = (
                    "is not supported by the simulator" if kind in NOT_SIMULATED else "is unknown"
                )
                raise ClientEventError(
                    "invalid_event_type", f"Event type '{kind}' {what}.", param="type"
                )
            await handler(data)
        except ClientEventError as exc:
            await self._refuse(exc, client_event_id(data))

    async def _refuse(self, exc: ClientEventError, event_id: str | None) -> None:
        await self._emit(
            events.error(exc.code, exc.message, param=exc.param, client_event_id=event_id)
        )

    # --- session and responses --------------------------------------------------------------

    async def _on_session_update(self, data: dict[str, Any]) -> None:
        update = data.get("session")
        self.session = merge_session(self.session, update)
        if isinstance(update, dict) and "turn_detection" in update:
            self._vad.reset()
            self._speech_item_id = None
        await self._emit(events.session_updated(self.session))

    async def _on_response_create(self, data: dict[str, Any]) -> None:
        request = parse_response_create(data, self.config.max_text_chars)
        active = self._active
        if active is not None:
            if not request.cancel_previous:
                raise ClientEventError(
                    "conversation_already_has_active_response",
                    f"Conversation already has an active response in progress: {active.id}. "
                    "Wait until the response is finished before creating a new one.",
                )
            await self._cancel(active, "client_cancelled")
        extra = data.get("additional_instructions")
        response = self._start(request, extra if isinstance(extra, str) else "")
        if self._timings is not None:
            timing = ResponseTiming(self.id, response.id, request.metadata, self._received_ns)
            self._timings.add(timing)
            self._awaiting_audio[response.id] = timing

    async def _on_response_cancel(self, data: dict[str, Any]) -> None:
        response_id = optional_str(data, "response_id", "response_id")
        active = self._active
        if active is None or response_id not in (None, active.id):
            raise ClientEventError(
                "response_cancel_not_active", "Cancellation failed: no active response found."
            )
        await self._cancel(active, "client_cancelled")

    def _start(self, request: ResponseRequest, additional_instructions: str) -> Response:
        session, overrides = self.session, request.overrides
        instructions = overrides.get("instructions", session.get("instructions") or "")
        plan = ResponsePlan(
            text=request.text if request.text is not None else self.config.generated_reply,
            pregenerated=request.text is not None,
            metadata=request.metadata,
            voice=overrides.get("voice", session.get("voice")),
            modalities=list(overrides.get("modalities", session.get("modalities") or ["audio"])),
            output_format=output_format(
                overrides.get("output_audio_format", session.get("output_audio_format", "pcm16"))
            ),
            temperature=overrides.get("temperature", session.get("temperature", 0.8)),
            max_output_tokens=overrides.get(
                "max_output_tokens", session.get("max_response_output_tokens", "inf")
            ),
            conversation_id=self.conversation_id,
            # A pre-generated message involves no model (captures show input_tokens 0); a
            # generated reply reads the instructions and the conversation so far.
            input_tokens=0
            if request.text is not None
            else math.ceil(len(instructions + additional_instructions) / 4)
            + 8 * len(self.conversation)
            + 1,
        )
        response = Response(
            plan,
            config=self.config,
            synth=self._synth,
            conversation=self.conversation,
            emit=self._emit,
        )
        self.responses.append(response)
        self._active = response
        self._active_task = asyncio.create_task(
            self._play(response), name=f"simulator {self.id} {response.id}"
        )
        return response

    async def _play(self, response: Response) -> None:
        try:
            await response.play()
        except SessionClosed:
            pass
        except Exception:
            logger.exception("simulator response %s failed", response.id)
            self.drop(reason="simulator internal error")
        finally:
            if not response.done:
                response.status = "disconnected"
            self._awaiting_audio.pop(response.id, None)  # it sent no audio (cancelled, text)
            if self._active is response:
                self._active = None
                self._active_task = None

    async def _cancel(self, response: Response, reason: str, *, truncate: bool = False) -> None:
        """Stop ``response`` and wait until its closing events are sent."""
        response.cancel(reason, truncate=truncate)
        task = self._active_task if self._active is response else None
        if task is not None:
            await asyncio.wait([task])

    # --- caller audio and turn detection ----------------------------------------------------

    async def _on_audio_append(self, data: dict[str, Any]) -> None:
        audio = decode_audio(data)
        self.audio_appends += 1
        self.audio_bytes_received += len(audio)
        if self.config.record_audio:
            self.received_audio += audio
        fmt = input_format(
            str(self.session.get("input_audio_format", "pcm16")),
            int(self.session.get("input_audio_sampling_rate", 24000)),
        )
        self._input_ms += fmt.ms_for_bytes(len(audio))
        turn_detection = self.session.get("turn_detection")
        if not isinstance(turn_detection, dict):
            return
        found = self._vad.feed(
            decode_input(audio, fmt),
            fmt.sample_rate,
            prefix_padding_ms=int(turn_detection.get("prefix_padding_ms", 300)),
            silence_duration_ms=int(turn_detection.get("silence_duration_ms", 500)),
        )
        for vad_event in found:
            if vad_event.kind == "speech_started":
                await self._on_speech_started(vad_event.audio_ms, turn_detection)
            else:
                await self._on_speech_stopped(vad_event.audio_ms, turn_detection)

    async def _on_speech_started(self, audio_ms: int, turn_detection: dict[str, Any]) -> None:
        self._speech_item_id = events.new_id("item")
        await self._emit(events.speech_started(audio_ms, self._speech_item_id))
        interrupt = turn_detection.get("interrupt_response")
        if interrupt is None:
            interrupt = self.config.interrupt_response_default
        if self._active is not None and interrupt:
            await self._cancel(
                self._active,
                "turn_detected",
                truncate=bool(turn_detection.get("auto_truncate", False)),
            )

    async def _on_speech_stopped(self, audio_ms: int, turn_detection: dict[str, Any]) -> None:
        item_id = self._speech_item_id or events.new_id("item")
        self._speech_item_id = None
        await self._emit(events.speech_stopped(audio_ms, item_id))
        await self._commit(item_id)
        # Server VAD answers the turn itself, unless a response is still playing (one the caller
        # was not allowed to interrupt).
        if turn_detection.get("create_response", True) and self._active is None:
            self._start(ResponseRequest(), "")

    async def _commit(self, item_id: str) -> None:
        item = events.user_audio_item(item_id)
        previous = self.conversation.add(item)
        self._input_ms = 0.0
        await self._emit(events.input_committed(previous, item_id))
        await self._emit(events.conversation_item_created(previous, item))

    async def _on_audio_commit(self, data: dict[str, Any]) -> None:
        if self._input_ms <= 0:
            raise ClientEventError(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: the buffer is empty.",
            )
        self._vad.reset()
        item_id = self._speech_item_id or events.new_id("item")
        self._speech_item_id = None
        await self._commit(item_id)

    async def _on_audio_clear(self, data: dict[str, Any]) -> None:
        self._input_ms = 0.0
        self._vad.reset()
        self._speech_item_id = None
        await self._emit(events.input_cleared())

    async def _on_output_clear(self, data: dict[str, Any]) -> None:
        await self._emit(events.output_audio_cleared())

    # --- conversation items -----------------------------------------------------------------

    async def _on_item_create(self, data: dict[str, Any]) -> None:
        previous, item = self.conversation.create(
            parse_item(data), optional_str(data, "previous_item_id", "previous_item_id")
        )
        await self._emit(events.conversation_item_created(previous, item))

    async def _on_item_retrieve(self, data: dict[str, Any]) -> None:
        item = self.conversation.require(require_str(data, "item_id")).view()
        await self._emit(events.item_retrieved(item))

    async def _on_item_delete(self, data: dict[str, Any]) -> None:
        item_id = require_str(data, "item_id")
        self.conversation.remove(item_id)
        await self._emit(events.item_deleted(item_id))

    async def _on_item_truncate(self, data: dict[str, Any]) -> None:
        item_id = require_str(data, "item_id")
        content_index = require_non_negative_int(data, "content_index")
        audio_end_ms = require_non_negative_int(data, "audio_end_ms")
        self.conversation.truncate(item_id, content_index, audio_end_ms)
        await self._emit(events.item_truncated(item_id, content_index, audio_end_ms))
