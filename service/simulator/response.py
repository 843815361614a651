"""One response: the full event sequence of a ``response.create``, paced like live audio.

The session creates a ``Response`` and runs ``play()`` in a task. Cancellation is cooperative
(``cancel()``), because a cancelled response still owes the client its closing events
(audio done, transcript done, part done, item done, ``response.done`` cancelled); ``Task.cancel``
is only for tearing the connection down, when nothing more is sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.simulator import events
from service.simulator.audio import AudioFormat, Synthesizer
from service.simulator.config import SimulatorConfig
from service.simulator.conversation import Conversation

Emit = Callable[[events.Event], Awaitable[None]]

SHORT_WAIT = 0.05  # seconds: waits up to this long are plain sleeps (see _wait_until)


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """Everything decided when the response is requested."""

    text: str
    pregenerated: bool
    metadata: dict[str, str] | None
    """As requested; echoed only if the configuration says so."""
    voice: Any
    modalities: list[str]
    output_format: AudioFormat
    temperature: float
    max_output_tokens: int | str
    conversation_id: str
    input_tokens: int


def _word_chunks(text: str) -> list[str]:
    """Pieces that join back to ``text`` exactly, one per word: how a model streams a reply."""
    return re.findall(r"\S+\s*|\s+", text)


class Response:
    def __init__(
        self,
        plan: ResponsePlan,
        *,
        config: SimulatorConfig,
        synth: Synthesizer,
        conversation: Conversation,
        emit: Emit,
    ) -> None:
        self.plan = plan
        self.id = events.new_id("resp")
        self.item_id = events.new_id("item")
        self.status = "in_progress"
        self.reason: str | None = None
        self.audio_bytes_sent = 0
        self.played_ms = 0.0
        """Audio the listener has heard, assuming real-time playback from the first chunk."""
        self._config = config
        self._synth = synth
        self._conversation = conversation
        self._emit = emit
        self._cancelled = asyncio.Event()
        self._truncate_on_cancel = False
        self._audio_started_at: float | None = None
        self._cancelled_at: float | None = None

    @property
    def text(self) -> str:
        return self.plan.text

    @property
    def metadata(self) -> dict[str, str] | None:
        return self.plan.metadata

    @property
    def done(self) -> bool:
        return self.status != "in_progress"

    def cancel(self, reason: str, *, truncate: bool = False) -> None:
        """Ask the response to stop; the first reason wins."""
        if self._cancelled.is_set():
            return
        self.reason = reason
        self._truncate_on_cancel = truncate
        self._cancelled_at = asyncio.get_running_loop().time()
        self._cancelled.set()

    # --- the event sequence -----------------------------------------------------------------

    async def play(self) -> None:
        loop = asyncio.get_running_loop()
        await self._wait_until(loop.time() + self._config.answer_delay)
        await self._emit(events.response_created(self._response("in_progress", [], None)))
        if self._cancelled.is_set():
            await self._finish([])
            return

        in_progress = events.assistant_item(self.item_id, "in_progress", [])
        await self._emit(events.output_item_added(self.id, in_progress))
        audio = "audio" in self.plan.modalities
        duration_ms = self._synth.duration_ms(self.text) if audio else 0.0
        previous = self._conversation.add(in_progress, audio_ms=duration_ms, text=self.text)
        await self._emit(events.conversation_item_created(previous, in_progress))

        part = await (self._speak() if audio else self._write())
        final = events.assistant_item(
            self.item_id, "incomplete" if self._cancelled.is_set() else "completed", [part]
        )
        stored = self._conversation.get(self.item_id)
        if stored is not None:
            stored.item = final
        await self._emit(events.output_item_done(self.id, final))
        if self._cancelled.is_set() and self._truncate_on_cancel and audio:
            # Auto truncation: the context keeps only what was heard before the caller spoke.
            if stored is not None:
                stored.truncate(int(self.played_ms))
            await self._emit(events.item_truncated(self.item_id, 0, int(self.played_ms)))
        await self._finish([final])

    async def _speak(self) -> dict[str, Any]:
        """Transcript first (all of it at once for a pre-generated text), then paced audio."""
        await self._emit(events.content_part_added(self.id, self.item_id, events.audio_part("")))
        pieces = [self.text] if self.plan.pregenerated else _word_chunks(self.text)
        transcript = ""
        for piece in pieces:
            if self._cancelled.is_set():
                break
            await self._emit(events.audio_transcript_delta(self.id, self.item_id, piece))
            transcript += piece
        await self._stream_audio()
        await self._emit(events.audio_done(self.id, self.item_id))
        await self._emit(events.audio_transcript_done(self.id, self.item_id, transcript))
        part = events.audio_part(transcript)
        await self._emit(events.content_part_done(self.id, self.item_id, part))
        return part

    async def _write(self) -> dict[str, Any]:
        """A text-only session: the reply as text deltas, no audio."""
        await self._emit(events.content_part_added(self.id, self.item_id, events.text_part("")))
        text = ""
        for piece in _word_chunks(self.text):
            if self._cancelled.is_set():
                break
            await self._emit(events.text_delta(self.id, self.item_id, piece))
            text += piece
        await self._emit(events.text_done(self.id, self.item_id, text))
        part = events.text_part(text)
        await self._emit(events.content_part_done(self.id, self.item_id, part))
        return part

    async def _stream_audio(self) -> None:
        if self._cancelled.is_set():
            return
        fmt = self.plan.output_format
        audio = self._synth.synthesize(self.text, fmt)
        chunk_ms = self._config.chunk_ms
        chunk = max(fmt.bytes_for_ms(chunk_ms), fmt.sample_width)
        loop = asyncio.get_running_loop()
        start = self._audio_started_at = loop.time()
        for index, offset in enumerate(range(0, len(audio), chunk)):
            # Chunk i leaves when the listener starts hearing it, as a real-time stream would.
            await self._wait_until(start + self._config.scaled(index * chunk_ms / 1000))
            if self._cancelled.is_set():
                break
            piece = audio[offset : offset + chunk]
            await self._emit(
                events.audio_delta(self.id, self.item_id, base64.b64encode(piece).decode("ascii"))
            )
            self.audio_bytes_sent += len(piece)
        else:
            # The last chunk plays to its end before the audio is done.
            await self._wait_until(start + self._config.scaled(fmt.ms_for_bytes(len(audio)) / 1000))
        self.played_ms = self._heard_ms()

    def _heard_ms(self) -> float:
        sent_ms = self.plan.output_format.ms_for_bytes(self.audio_bytes_sent)
        if self._cancelled_at is None or self._audio_started_at is None or self._config.speed == 0:
            return sent_ms
        elapsed_ms = (self._cancelled_at - self._audio_started_at) * 1000 * self._config.speed
        return min(sent_ms, max(elapsed_ms, 0.0))

    async def _finish(self, output: list[dict[str, Any]]) -> None:
        status = "cancelled" if self._cancelled.is_set() else "completed"
        spoken = "".join(_part_text(item) for item in output)
        usage = events.usage(
            input_text_tokens=self.plan.input_tokens,
            output_text_tokens=math.ceil(len(spoken) / 4),
            output_audio_ms=self.plan.output_format.ms_for_bytes(self.audio_bytes_sent),
        )
        await self._emit(events.response_done(self._response(status, output, usage)))
        self.status = status

    def _response(
        self, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        plan = self.plan
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status,
            "status_details": events.status_details(status, self.reason),
            "output": output,
            "usage": usage,
            "conversation_id": plan.conversation_id,
            "voice": plan.voice,
            "modalities": plan.modalities,
            "output_audio_format": plan.output_format.name,
            "temperature": plan.temperature,
            "max_output_tokens": plan.max_output_tokens,
            "metadata": plan.metadata if self._config.echo_metadata else None,
        }

    async def _wait_until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (loop time) or until cancelled, whichever comes first."""
        delay = deadline - asyncio.get_running_loop().time()
        if delay <= 0 or self._cancelled.is_set():
            await asyncio.sleep(0)  # let the reader see a cancel or barge-in between chunks
            return
        if delay <= SHORT_WAIT:
            # Between two chunks: a plain sleep costs a fraction of a cancellable wait, and a
            # cancel is still seen before the next chunk leaves.
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._cancelled.wait()


def _part_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or []
    return "".join(str(p.get("transcript") or p.get("text") or "") for p in parts)
