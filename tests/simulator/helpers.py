"""A Voice Live client for the simulator's tests: the official SDK, with bounded waits and a check
that every event it receives deserializes into the SDK's own typed class for its ``type``."""

from __future__ import annotations

import asyncio
import base64
import math
from array import array
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import (
    ServerEvent,
    ServerEventConversationItemCreated,
    ServerEventConversationItemDeleted,
    ServerEventConversationItemRetrieved,
    ServerEventConversationItemTruncated,
    ServerEventError,
    ServerEventInputAudioBufferCleared,
    ServerEventInputAudioBufferCommitted,
    ServerEventInputAudioBufferSpeechStarted,
    ServerEventInputAudioBufferSpeechStopped,
    ServerEventOutputAudioBufferCleared,
    ServerEventResponseAudioDelta,
    ServerEventResponseAudioDone,
    ServerEventResponseAudioTranscriptDelta,
    ServerEventResponseAudioTranscriptDone,
    ServerEventResponseContentPartAdded,
    ServerEventResponseContentPartDone,
    ServerEventResponseCreated,
    ServerEventResponseDone,
    ServerEventResponseOutputItemAdded,
    ServerEventResponseOutputItemDone,
    ServerEventResponseTextDelta,
    ServerEventResponseTextDone,
    ServerEventSessionCreated,
    ServerEventSessionUpdated,
)
from azure.core.credentials import AzureKeyCredential

from service.simulator import Simulator

E = TypeVar("E", bound=ServerEvent)

KEY = "simulator-test-key"
WAIT_S = 5.0

# The contract: each event type the simulator sends and the SDK class it must become.
TYPED: dict[str, type[ServerEvent]] = {
    "session.created": ServerEventSessionCreated,
    "session.updated": ServerEventSessionUpdated,
    "error": ServerEventError,
    "response.created": ServerEventResponseCreated,
    "response.output_item.added": ServerEventResponseOutputItemAdded,
    "conversation.item.created": ServerEventConversationItemCreated,
    "response.content_part.added": ServerEventResponseContentPartAdded,
    "response.audio_transcript.delta": ServerEventResponseAudioTranscriptDelta,
    "response.audio.delta": ServerEventResponseAudioDelta,
    "response.audio.done": ServerEventResponseAudioDone,
    "response.audio_transcript.done": ServerEventResponseAudioTranscriptDone,
    "response.text.delta": ServerEventResponseTextDelta,
    "response.text.done": ServerEventResponseTextDone,
    "response.content_part.done": ServerEventResponseContentPartDone,
    "response.output_item.done": ServerEventResponseOutputItemDone,
    "response.done": ServerEventResponseDone,
    "input_audio_buffer.speech_started": ServerEventInputAudioBufferSpeechStarted,
    "input_audio_buffer.speech_stopped": ServerEventInputAudioBufferSpeechStopped,
    "input_audio_buffer.committed": ServerEventInputAudioBufferCommitted,
    "input_audio_buffer.cleared": ServerEventInputAudioBufferCleared,
    "output_audio_buffer.cleared": ServerEventOutputAudioBufferCleared,
    "conversation.item.truncated": ServerEventConversationItemTruncated,
    "conversation.item.deleted": ServerEventConversationItemDeleted,
    "conversation.item.retrieved": ServerEventConversationItemRetrieved,
}


class Peer:
    """One SDK connection and everything it has received."""

    def __init__(self, conn: VoiceLiveConnection) -> None:
        self.conn = conn
        self.events: list[ServerEvent] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.conn.send(event)

    async def recv(self, wait: float = WAIT_S) -> ServerEvent:
        async with asyncio.timeout(wait):
            event = await self.conn.recv()
        expected = TYPED.get(event.type)
        assert expected is not None, f"unexpected event type {event.type}"
        assert type(event) is expected, f"{event.type} became {type(event).__name__}"
        self.events.append(event)
        return event

    async def expect(self, cls: type[E], wait: float = WAIT_S) -> E:
        event = await self.recv(wait)
        assert isinstance(event, cls), f"expected {cls.__name__}, got {event.type}: {event}"
        return event

    async def until(self, cls: type[E], wait: float = WAIT_S) -> tuple[list[ServerEvent], E]:
        """Events up to and including the first ``cls``."""
        seen: list[ServerEvent] = []
        async with asyncio.timeout(wait):
            while True:
                event = await self.recv(wait)
                seen.append(event)
                if isinstance(event, cls):
                    return seen, event

    async def rest(self, wait: float = WAIT_S) -> list[ServerEvent]:
        """Everything until the server closes the connection."""
        seen: list[ServerEvent] = []
        async with asyncio.timeout(wait):
            async for event in self.conn:
                assert type(event) is TYPED[event.type]
                seen.append(event)
        self.events += seen
        return seen


@asynccontextmanager
async def peer(
    sim: Simulator, *, key: str = KEY, model: str = "gpt-realtime", **options: Any
) -> AsyncIterator[Peer]:
    """A connected SDK client that has already received ``session.created``."""
    async with connect(
        endpoint=sim.endpoint, credential=AzureKeyCredential(key), model=model, **options
    ) as conn:
        client = Peer(conn)
        await client.expect(ServerEventSessionCreated)
        yield client


# --- client events ------------------------------------------------------------------------------


def say(text: str, **response: Any) -> dict[str, Any]:
    """``response.create`` with a pre-generated assistant message."""
    message = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}
    return {
        "type": "response.create",
        "response": {"pre_generated_assistant_message": message, **response},
    }


def vad(**settings: Any) -> dict[str, Any]:
    """``session.update`` turning server VAD on with explicit settings (the how-to's advice)."""
    turn_detection = {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 0,
        "silence_duration_ms": 200,
        "create_response": False,
        "interrupt_response": True,
        "auto_truncate": False,
        **settings,
    }
    return {"type": "session.update", "session": {"turn_detection": turn_detection}}


def caller_audio(ms: int, *, level: float, rate: int = 24000) -> dict[str, Any]:
    """``input_audio_buffer.append`` of a 220 Hz tone at ``level`` of full scale (0: silence)."""
    n = rate * ms // 1000
    peak = level * 32767 * math.sqrt(2)  # so that the RMS is ``level``
    samples = array("h", (int(peak * math.sin(2 * math.pi * 220 * i / rate)) for i in range(n)))
    return {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(samples.tobytes()).decode(),
    }


def audio_of(events: list[ServerEvent]) -> bytes:
    return b"".join(e.delta for e in events if isinstance(e, ServerEventResponseAudioDelta))
