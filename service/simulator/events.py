"""Builders of server events, shaped as the Voice Live service sends them.

Pure functions returning JSON-ready dicts. ``event_id`` is added when an event is sent, so that
every event on a connection gets one, in send order. Each shape deserializes into the SDK's typed
class (``azure.ai.voicelive.models.ServerEvent*``); tests check that.
"""

from __future__ import annotations

import itertools
import math
import secrets
from typing import Any

Event = dict[str, Any]


_PROCESS_TAG = secrets.token_hex(6)
_serial = itertools.count(1)


def new_id(prefix: str) -> str:
    """A unique id like the service's (``sess_``, ``resp_``, ``item_``, ``event_``, ``conv_``).

    A random tag drawn once per process and a counter: every audio chunk needs an event id, and a
    random draw per id is a system call per frame.
    """
    return f"{prefix}_{_PROCESS_TAG}{next(_serial):010x}"


# --- session ------------------------------------------------------------------------------------


def session_created(session: dict[str, Any]) -> Event:
    return {"type": "session.created", "session": session}


def session_updated(session: dict[str, Any]) -> Event:
    return {"type": "session.updated", "session": session}


def error(
    code: str,
    message: str,
    *,
    param: str | None = None,
    client_event_id: str | None = None,
    kind: str = "invalid_request_error",
) -> Event:
    return {
        "type": "error",
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


# --- items and parts ----------------------------------------------------------------------------


def assistant_item(item_id: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def user_audio_item(item_id: str) -> dict[str, Any]:
    """The user message a committed input audio buffer becomes (no transcription simulated)."""
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def audio_part(transcript: str) -> dict[str, Any]:
    return {"type": "audio", "transcript": transcript}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


# --- response -----------------------------------------------------------------------------------


def usage(
    *, input_text_tokens: int, output_text_tokens: int, output_audio_ms: float
) -> dict[str, Any]:
    """Token usage; audio counts one token per 50 ms, as the realtime models bill it."""
    audio_tokens = math.ceil(output_audio_ms / 50)
    output_tokens = output_text_tokens + audio_tokens
    return {
        "total_tokens": input_text_tokens + output_tokens,
        "input_tokens": input_text_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "cached_tokens": 0,
            "text_tokens": input_text_tokens,
            "audio_tokens": 0,
            "image_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text_tokens, "audio_tokens": audio_tokens},
    }


def status_details(status: str, reason: str | None) -> dict[str, Any] | None:
    if status in ("completed", "in_progress"):
        return None
    return {"type": status, "reason": reason}


def response_created(response: dict[str, Any]) -> Event:
    return {"type": "response.created", "response": response}


def response_done(response: dict[str, Any]) -> Event:
    return {"type": "response.done", "response": response}


def output_item_added(response_id: str, item: dict[str, Any]) -> Event:
    return {
        "type": "response.output_item.added",
        "response_id": response_id,
        "output_index": 0,
        "item": item,
    }


def output_item_done(response_id: str, item: dict[str, Any]) -> Event:
    return {
        "type": "response.output_item.done",
        "response_id": response_id,
        "output_index": 0,
        "item": item,
    }


def conversation_item_created(previous_item_id: str | None, item: dict[str, Any]) -> Event:
    return {"type": "conversation.item.created", "previous_item_id": previous_item_id, "item": item}


def _content(kind: str, response_id: str, item_id: str, **fields: Any) -> Event:
    """An event about content part 0 of output item 0 (the simulator answers one message)."""
    return {
        "type": kind,
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        **fields,
    }


def content_part_added(response_id: str, item_id: str, part: dict[str, Any]) -> Event:
    return _content("response.content_part.added", response_id, item_id, part=part)


def content_part_done(response_id: str, item_id: str, part: dict[str, Any]) -> Event:
    return _content("response.content_part.done", response_id, item_id, part=part)


def audio_transcript_delta(response_id: str, item_id: str, delta: str) -> Event:
    return _content("response.audio_transcript.delta", response_id, item_id, delta=delta)


def audio_transcript_done(response_id: str, item_id: str, transcript: str) -> Event:
    return _content("response.audio_transcript.done", response_id, item_id, transcript=transcript)


def audio_delta(response_id: str, item_id: str, delta_b64: str) -> Event:
    return _content("response.audio.delta", response_id, item_id, delta=delta_b64)


def audio_done(response_id: str, item_id: str) -> Event:
    return _content("response.audio.done", response_id, item_id)


def text_delta(response_id: str, item_id: str, delta: str) -> Event:
    return _content("response.text.delta", response_id, item_id, delta=delta)


def text_done(response_id: str, item_id: str, text: str) -> Event:
    return _content("response.text.done", response_id, item_id, text=text)


# --- conversation and input audio ---------------------------------------------------------------


def item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> Event:
    return {
        "type": "conversation.item.truncated",
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }


def item_deleted(item_id: str) -> Event:
    return {"type": "conversation.item.deleted", "item_id": item_id}


def item_retrieved(item: dict[str, Any]) -> Event:
    return {"type": "conversation.item.retrieved", "item": item}


def speech_started(audio_start_ms: int, item_id: str) -> Event:
    return {
        "type": "input_audio_buffer.speech_started",
        "audio_start_ms": audio_start_ms,
        "item_id": item_id,
    }


def speech_stopped(audio_end_ms: int, item_id: str) -> Event:
    return {
        "type": "input_audio_buffer.speech_stopped",
        "audio_end_ms": audio_end_ms,
        "item_id": item_id,
    }


def input_committed(previous_item_id: str | None, item_id: str) -> Event:
    return {
        "type": "input_audio_buffer.committed",
        "previous_item_id": previous_item_id,
        "item_id": item_id,
    }


def input_cleared() -> Event:
    return {"type": "input_audio_buffer.cleared"}


def output_audio_cleared() -> Event:
    return {"type": "output_audio_buffer.cleared"}
