"""Parsing and validation of client events: pure functions that either return clean values or
raise ``ClientEventError``, which the session answers with an ``error`` event and carries on."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from service.simulator.audio import INPUT_FORMATS, INPUT_SAMPLE_RATES, OUTPUT_FORMATS

VAD_TYPES = frozenset(
    {
        "server_vad",
        "semantic_vad",
        "azure_semantic_vad",
        "azure_semantic_vad_en",
        "azure_semantic_vad_multilingual",
    }
)
MODALITIES = frozenset({"text", "audio", "animation", "avatar"})
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512
SERVER_SET_SESSION_FIELDS = frozenset({"id", "object", "expires_at"})


class ClientEventError(Exception):
    """A client event the service refuses; the connection stays open."""

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def parse_event(raw: str | bytes) -> dict[str, Any]:
    """A client frame as a JSON object with a string ``type``."""
    if isinstance(raw, bytes):
        raise ClientEventError("invalid_event", "Binary frames are not supported; send JSON text.")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ClientEventError("invalid_json", f"The event is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ClientEventError("invalid_event", "An event must be a JSON object.")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'type'.", param="type"
        )
    event_id = data.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise ClientEventError("invalid_type", "'event_id' must be a string.", param="event_id")
    return data


def client_event_id(data: dict[str, Any]) -> str | None:
    event_id = data.get("event_id")
    return event_id if isinstance(event_id, str) else None


# --- small typed getters ------------------------------------------------------------------------


def _invalid(param: str, expected: str) -> ClientEventError:
    return ClientEventError("invalid_value", f"'{param}' must be {expected}.", param=param)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def require_str(data: dict[str, Any], key: str, param: str | None = None) -> str:
    value = data.get(key)
    if value is None:
        raise ClientEventError(
            "missing_required_parameter",
            f"Missing required parameter: '{param or key}'.",
            param=param or key,
        )
    if not isinstance(value, str):
        raise _invalid(param or key, "a string")
    return value


def optional_str(data: dict[str, Any], key: str, param: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(param, "a string")
    return value


def require_non_negative_int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if value is None:
        raise ClientEventError(
            "missing_required_parameter", f"Missing required parameter: '{key}'.", param=key
        )
    if not _is_int(value) or value < 0:
        raise _invalid(key, "a non-negative integer")
    return int(value)


def _optional_bool(data: dict[str, Any], key: str, param: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(param, "a boolean")
    return value


def decode_audio(data: dict[str, Any]) -> bytes:
    encoded = require_str(data, "audio")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid("audio", "base64-encoded audio") from exc


# --- session.update -----------------------------------------------------------------------------


def _check_turn_detection(value: Any) -> None:
    if value is None:
        return
    param = "session.turn_detection"
    if not isinstance(value, dict):
        raise _invalid(param, "an object or null")
    kind = value.get("type")
    if kind not in VAD_TYPES:
        raise _invalid(f"{param}.type", "one of " + ", ".join(sorted(VAD_TYPES)))
    threshold = value.get("threshold")
    if threshold is not None and (not _is_number(threshold) or not 0 <= threshold <= 1):
        raise _invalid(f"{param}.threshold", "a number between 0 and 1")
    for key in ("prefix_padding_ms", "silence_duration_ms", "speech_duration_ms"):
        duration = value.get(key)
        if duration is not None and (not _is_int(duration) or duration < 0):
            raise _invalid(f"{param}.{key}", "a non-negative integer")
    for key in ("create_response", "interrupt_response", "auto_truncate"):
        _optional_bool(value, key, f"{param}.{key}", False)


def _check_common(values: dict[str, Any], prefix: str) -> None:
    """Fields that ``session.update`` and ``response.create`` share."""
    modalities = values.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list)
        or not modalities
        or not all(isinstance(m, str) and m in MODALITIES for m in modalities)
    ):
        raise _invalid(
            f"{prefix}.modalities", "a non-empty list of " + ", ".join(sorted(MODALITIES))
        )
    voice = values.get("voice")
    if voice is not None and not (
        isinstance(voice, str) or (isinstance(voice, dict) and isinstance(voice.get("name"), str))
    ):
        raise _invalid(f"{prefix}.voice", "a voice name or a voice object with a 'name'")
    output_format = values.get("output_audio_format")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise _invalid(f"{prefix}.output_audio_format", "one of " + ", ".join(OUTPUT_FORMATS))
    instructions = values.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid(f"{prefix}.instructions", "a string")
    temperature = values.get("temperature")
    if temperature is not None and not _is_number(temperature):
        raise _invalid(f"{prefix}.temperature", "a number")


def _check_max_tokens(value: Any, param: str) -> None:
    if value is not None and value != "inf" and (not _is_int(value) or value < 1):
        raise _invalid(param, "a positive integer or 'inf'")


def merge_session(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """The effective session after ``session.update``: present fields replace, others stay."""
    if not isinstance(update, dict):
        raise _invalid("session", "an object")
    _check_common(update, "session")
    if "turn_detection" in update:
        _check_turn_detection(update["turn_detection"])
    input_format = update.get("input_audio_format")
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise _invalid("session.input_audio_format", "one of " + ", ".join(INPUT_FORMATS))
    rate = update.get("input_audio_sampling_rate")
    if rate is not None and rate not in INPUT_SAMPLE_RATES:
        raise _invalid("session.input_audio_sampling_rate", "16000 or 24000")
    _check_max_tokens(
        update.get("max_response_output_tokens"), "session.max_response_output_tokens"
    )
    merged = dict(current)
    merged.update((k, v) for k, v in update.items() if k not in SERVER_SET_SESSION_FIELDS)
    return merged


# --- response.create ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    """What a ``response.create`` asks for, validated."""

    text: str | None = None
    """The pre-generated assistant message, or None for a generated reply."""
    metadata: dict[str, str] | None = None
    cancel_previous: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    """Per-response settings that override the session's (voice, format, modalities, ...)."""


def _check_metadata(value: Any) -> dict[str, str] | None:
    param = "response.metadata"
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(param, "an object of string values")
    if len(value) > METADATA_MAX_PAIRS:
        raise _invalid(param, f"at most {METADATA_MAX_PAIRS} pairs")
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise _invalid(param, f"keys of at most {METADATA_MAX_KEY} characters")
        if not isinstance(item, str) or len(item) > METADATA_MAX_VALUE:
            raise _invalid(param, f"string values of at most {METADATA_MAX_VALUE} characters")
    return dict(value)


def _pre_generated_text(value: Any, max_chars: int | None) -> str | None:
    param = "response.pre_generated_assistant_message"
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type", "message") != "message":
        raise _invalid(param, "a message item")
    if value.get("role") != "assistant":
        raise _invalid(f"{param}.role", "'assistant'")
    content = value.get("content")
    if (
        not isinstance(content, list)
        or len(content) != 1
        or not isinstance(content[0], dict)
        or content[0].get("type") != "text"
        or not isinstance(content[0].get("text"), str)
        or not content[0]["text"]
    ):
        raise _invalid(f"{param}.content", "a single non-empty text part")
    text: str = content[0]["text"]
    if max_chars is not None and len(text) > max_chars:
        raise _invalid(f"{param}.content", f"at most {max_chars} characters")
    return text


def parse_response_create(data: dict[str, Any], max_text_chars: int | None) -> ResponseRequest:
    params = data.get("response")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise _invalid("response", "an object")
    _check_common(params, "response")
    _check_max_tokens(params.get("max_output_tokens"), "response.max_output_tokens")
    _optional_bool(params, "commit", "response.commit", True)
    optional_str(data, "additional_instructions", "additional_instructions")
    overrides = {
        key: params[key]
        for key in (
            "modalities",
            "voice",
            "output_audio_format",
            "instructions",
            "temperature",
            "max_output_tokens",
        )
        if params.get(key) is not None
    }
    return ResponseRequest(
        text=_pre_generated_text(params.get("pre_generated_assistant_message"), max_text_chars),
        metadata=_check_metadata(params.get("metadata")),
        cancel_previous=_optional_bool(params, "cancel_previous", "response.cancel_previous", True),
        overrides=overrides,
    )


# --- conversation items -------------------------------------------------------------------------

ITEM_TYPES = frozenset({"message", "function_call", "function_call_output"})
ROLES = frozenset({"user", "assistant", "system"})


def parse_item(data: dict[str, Any]) -> dict[str, Any]:
    """The item of ``conversation.item.create``, checked enough to be stored and echoed."""
    item = data.get("item")
    if not isinstance(item, dict):
        raise ClientEventError(
            "missing_required_parameter", "Missing required parameter: 'item'.", param="item"
        )
    kind = item.get("type")
    if kind not in ITEM_TYPES:
        raise _invalid("item.type", "one of " + ", ".join(sorted(ITEM_TYPES)))
    if kind == "message":
        if item.get("role") not in ROLES:
            raise _invalid("item.role", "one of " + ", ".join(sorted(ROLES)))
        if not isinstance(item.get("content"), list):
            raise _invalid("item.content", "a list of content parts")
    optional_str(item, "id", "item.id")
    return dict(item)
