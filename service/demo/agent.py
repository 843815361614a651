"""The demo's voice agent: written against the official SDK exactly as a customer's agent is. The
only change from talking to Azure directly is the ``endpoint`` (and the service key)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import struct
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.ai.voicelive.aio import VoiceLiveConnection

SAMPLE_RATE = 24_000
CHUNK_MS = 20


def tone(ms: int, *, amplitude: float = 0.4, hz: float = 220.0) -> list[bytes]:
    """PCM16 24 kHz chunks of a tone: loud enough for voice activity detection, like a caller
    talking over the agent."""
    samples = SAMPLE_RATE * CHUNK_MS // 1000
    chunks = []
    for index in range(ms // CHUNK_MS):
        start = index * samples
        values = (
            int(amplitude * 32767 * math.sin(2 * math.pi * hz * (start + n) / SAMPLE_RATE))
            for n in range(samples)
        )
        chunks.append(struct.pack(f"<{samples}h", *values))
    return chunks


def silence(ms: int) -> list[bytes]:
    return [bytes(SAMPLE_RATE * CHUNK_MS // 1000 * 2)] * (ms // CHUNK_MS)


class DemoAgent:
    """Reads every server event in the background, keeps the audio it was sent, and tells the
    narrator about the events a listener would notice."""

    def __init__(self, connection: VoiceLiveConnection, narrate: Callable[[str], None]) -> None:
        self.connection = connection
        self.narrate = narrate
        self.audio = bytearray()
        self.voicelive_id: str | None = None
        self.updated = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[str, asyncio.Future[Any]]] = []

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    def when(self, kind: str) -> asyncio.Future[Any]:
        """A future for the next event of this type."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, future))
        return future

    async def _read(self) -> None:
        try:
            await self._follow()
        except Exception as exc:  # wake every waiter: the story must not hang on a dead reader
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(exc)
            raise

    async def _follow(self) -> None:
        event: Any
        async for event in self.connection:
            kind = event.type
            if kind == "response.audio.delta":
                self.audio += event.delta  # the SDK hands over the decoded bytes
            elif kind == "session.created":
                self.voicelive_id = event.session.id
            elif kind == "session.updated":
                self.updated.set()
            elif kind == "response.audio_transcript.done":
                self.narrate(f'agent hears: "{event.transcript}"')
            elif kind == "input_audio_buffer.speech_started":
                self.narrate("Voice Live hears the caller speaking over the agent (barge-in)")
            elif kind == "response.done":
                response = event.response
                details = response.status_details
                cause = getattr(details, "reason", None) if details else None
                reason = f" ({getattr(cause, 'value', cause)})" if cause else ""
                status = getattr(response.status, "value", response.status)
                self.narrate(f"response {response.id} ended: {status}{reason}")
            for waiter in [w for w in self._waiters if w[0] == kind]:
                self._waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(event)

    async def speak(self, chunks: list[bytes]) -> None:
        """Send caller audio, paced like a microphone (one 20 ms chunk every 20 ms)."""
        for chunk in chunks:
            await self.connection.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await asyncio.sleep(CHUNK_MS / 1000)

    def write_wav(self, path: Path) -> float:
        """The audio the agent received, as a 24 kHz mono WAV file; returns its seconds."""
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(bytes(self.audio))
        return len(self.audio) / (2 * SAMPLE_RATE)
