"""What the relay reads off a frame, and how it maps names between the agent and the upstream.
Pure functions: the relay's policy, tested on their own.

Audio frames are most of the traffic (50 a second each way per call), so they are recognised by
a substring search near either end of the frame (the SDK writes ``type`` last, the service and the
simulator near the start) and never parsed. A base64 payload cannot contain a quote, and inside a
JSON string a quote is escaped, so the marker can only match the event's own ``type`` member.
Every other frame is a control event and is parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.connector.protocol import base64_decoded_length
from service.phrases.locales import normalize_locale

_WINDOW = 200


def _markers(event_type: str) -> tuple[str, str]:
    return f'"type":"{event_type}"', f'"type": "{event_type}"'


AUDIO_IN = _markers("input_audio_buffer.append")
AUDIO_OUT = _markers("response.audio.delta")


def has_type(frame: str, markers: tuple[str, str]) -> bool:
    tail = max(len(frame) - _WINDOW, 0)
    for marker in markers:
        if frame.find(marker, 0, _WINDOW) >= 0 or frame.find(marker, tail) >= 0:
            return True
    return False


def is_audio_in(frame: str) -> bool:
    return has_type(frame, AUDIO_IN)


def is_audio_out(frame: str) -> bool:
    return has_type(frame, AUDIO_OUT)


def audio_delta_bytes(frame: str) -> int:
    """Decoded size of a ``response.audio.delta`` payload, from the length of its base64 text."""
    for key in ('"delta":"', '"delta": "'):
        start = frame.find(key)
        if start >= 0:
            start += len(key)
            end = frame.find('"', start)
            if end < 0:
                return 0
            if frame.find("\\", start, end) >= 0:  # JSON escapes (\/, \u002B): decode them
                return base64_decoded_length(json.loads(frame[start - 1 : end + 1]))
            return base64_decoded_length(frame[start:end])
    return 0


def parse_control(frame: str | bytes) -> dict[str, Any] | None:
    """The event of a control frame, or None when it is not a JSON object (the upstream answers
    such frames itself; the relay passes them on untouched)."""
    try:
        event = json.loads(frame)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


# --- close codes ---------------------------------------------------------------------------------

_RESERVED = {1005: 1000, 1006: 1011, 1015: 1011}  # codes a peer must never send in a close frame


def close_code_for_peer(code: int | None) -> int:
    """The code to send on when the other side closed with ``code``."""
    if code is None:
        return 1011
    if code in _RESERVED:
        return _RESERVED[code]
    if code < 1000 or 1016 <= code < 3000 or code >= 5000 or code == 1004:
        return 1011
    return code


def close_reason(reason: str) -> str:
    """Close reasons are at most 123 bytes of UTF-8."""
    encoded = reason.encode()[:123]
    return encoded.decode(errors="ignore")


# --- the connect request -------------------------------------------------------------------------

# Ours, never forwarded: the service's own key and the session parameters it consumes.
OWN_PARAMETERS = frozenset(
    {"api-key", "conversation-key", "locale", "greeting", "api-version", "model"}
)
# Added by the SDK of the service itself.
SDK_PARAMETERS = frozenset({"x-ms-client-sdk"})


@dataclass(frozen=True)
class ConnectRequest:
    api_version: str | None
    model: str | None
    extra_query: dict[str, str]
    conversation_key: str | None
    locale: str | None
    greeting: str | None


def connect_request(query: dict[str, str], headers: dict[str, str]) -> ConnectRequest:
    """Read the agent's connect request: Voice Live's own parameters pass through (``model``,
    ``api-version``, agent mode's ``agent-*`` and any other), ours come as query parameters or
    ``x-`` headers. ValueError names what is wrong."""

    def ours(name: str) -> str | None:
        value = query.get(name) or headers.get(f"x-{name}")
        return value.strip() if value and value.strip() else None

    conversation_key = ours("conversation-key")
    if conversation_key is not None and len(conversation_key) > 200:
        raise ValueError("conversation-key is longer than 200 characters")
    locale = ours("locale")
    if locale is not None:
        locale = normalize_locale(locale)
    greeting = ours("greeting")
    extra = {k: v for k, v in query.items() if k not in OWN_PARAMETERS and k not in SDK_PARAMETERS}
    return ConnectRequest(
        api_version=query.get("api-version"),
        model=query.get("model"),
        extra_query=extra,
        conversation_key=conversation_key,
        locale=locale,
        greeting=greeting,
    )
