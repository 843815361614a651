"""What the relay reads off a frame without parsing it, the close codes it passes on, and how it
reads the agent's connect request. Frames are written the way their real writers write them: the
SDK (``json.dumps`` of ``as_dict()``: spaces after colons, ``type`` last), the simulator
(``json.dumps``: spaces, ``event_id`` then ``type`` first) and the service (compact)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.ai.voicelive.models import ClientEventInputAudioBufferAppend

from service.relay.frames import (
    audio_delta_bytes,
    close_code_for_peer,
    close_reason,
    connect_request,
    is_audio_in,
    is_audio_out,
    parse_control,
)

COMPACT = (",", ":")
AUDIO_100MS = bytes(range(256)) * 18 + bytes(192)  # 4800 bytes: 100 ms of pcm16 at 24 kHz


Writer = Callable[[bytes], str]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sdk_append(audio: bytes, event_id: str | None = None) -> str:
    """Exactly what ``conn.input_audio_buffer.append(audio=...)`` puts on the wire."""
    event = ClientEventInputAudioBufferAppend(audio=b64(audio))
    if event_id:
        event["event_id"] = event_id
    return json.dumps(event.as_dict())


def delta_event(audio: bytes) -> dict[str, Any]:
    return {
        "event_id": "event_0f3a9c1d2e4b5a6c7d8e9f",
        "type": "response.audio.delta",
        "response_id": "resp_1a2b3c4d5e6f7a8b9c0d1e",
        "item_id": "item_9f8e7d6c5b4a3f2e1d0c9b",
        "output_index": 0,
        "content_index": 0,
        "delta": b64(audio),
    }


def simulator_delta(audio: bytes) -> str:
    return json.dumps(delta_event(audio))


def service_delta(audio: bytes) -> str:
    event = delta_event(audio)
    ordered = {"type": event.pop("type"), **event}  # the service writes type first
    return json.dumps(ordered, separators=COMPACT)


# --- recognising audio ---------------------------------------------------------------------------


class TestAudioFrames:
    @pytest.mark.parametrize("event_id", [None, "evt_client_000123"])
    def test_an_sdk_append_is_caller_audio(self, event_id: str | None) -> None:
        frame = sdk_append(AUDIO_100MS, event_id)
        assert frame.index('"type": "input_audio_buffer.append"') > 200  # written last
        assert is_audio_in(frame)
        assert not is_audio_out(frame)

    def test_a_compact_append_is_caller_audio(self) -> None:
        frame = json.dumps(
            {"type": "input_audio_buffer.append", "audio": b64(AUDIO_100MS)}, separators=COMPACT
        )
        assert is_audio_in(frame)

    @pytest.mark.parametrize("write", [simulator_delta, service_delta], ids=["spaced", "compact"])
    def test_a_delta_is_agent_audio(self, write: Writer) -> None:
        frame = write(AUDIO_100MS)
        assert is_audio_out(frame)
        assert not is_audio_in(frame)

    def test_a_compact_delta_with_event_id_first_is_agent_audio(self) -> None:
        frame = json.dumps(delta_event(AUDIO_100MS), separators=COMPACT)
        assert frame.startswith('{"event_id":"event_')
        assert is_audio_out(frame)

    @pytest.mark.parametrize(
        "event",
        [
            {"type": "response.audio.done", "response_id": "resp_1", "item_id": "item_1"},
            {"type": "response.audio_transcript.delta", "response_id": "r", "delta": "Hello"},
            {"type": "response.audio_timestamp.delta", "audio_offset_ms": 0, "text": "Hi"},
            {"type": "input_audio_buffer.commit"},
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 120},
        ],
        ids=lambda e: e["type"],
    )
    def test_neighbouring_event_types_are_not_audio(self, event: dict[str, Any]) -> None:
        for frame in (json.dumps(event), json.dumps(event, separators=COMPACT)):
            assert not is_audio_in(frame)
            assert not is_audio_out(frame)

    def test_a_control_event_whose_nested_item_has_a_type_is_not_audio(self) -> None:
        event = {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_audio", "audio": b64(AUDIO_100MS)}],
            },
        }
        as_sdk = {"item": event["item"], "type": event["type"]}  # type last, nested type near it
        for frame in (json.dumps(event), json.dumps(as_sdk), json.dumps(event, separators=COMPACT)):
            assert not is_audio_in(frame)
            assert not is_audio_out(frame)
            assert parse_control(frame) is not None

    def test_a_marker_quoted_inside_a_text_value_does_not_count(self) -> None:
        said = (
            'the JSON was {"type":"response.audio.delta"} and {"type": "input_audio_buffer.append"}'
        )
        event = {"type": "response.audio_transcript.done", "response_id": "r", "transcript": said}
        for frame in (json.dumps(event), json.dumps(event, separators=COMPACT)):
            assert not is_audio_out(frame)
            assert not is_audio_in(frame)

    def test_a_short_frame_is_recognised(self) -> None:
        assert is_audio_out('{"type":"response.audio.delta","delta":""}')
        assert is_audio_in('{"audio": "", "type": "input_audio_buffer.append"}')


class TestAudioBytes:
    @pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 160, 4799, 4800, 4801])
    @pytest.mark.parametrize("write", [simulator_delta, service_delta], ids=["spaced", "compact"])
    def test_decoded_size_comes_from_the_base64_length(self, size: int, write: Writer) -> None:
        assert audio_delta_bytes(write(bytes(size))) == size

    def test_json_escapes_in_the_payload_do_not_count_as_audio(self) -> None:
        # Valid JSON for the same event: "/" written "\\/" (many encoders) and "+" written
        # "\\u002B" (System.Text.Json's default encoder escapes "+").
        frame = service_delta(AUDIO_100MS)
        escaped = frame.replace("/", "\\/").replace("+", "\\u002B")
        assert escaped != frame
        assert json.loads(escaped) == json.loads(frame)
        assert audio_delta_bytes(escaped) == len(AUDIO_100MS)

    def test_a_frame_without_a_delta_counts_nothing(self) -> None:
        assert audio_delta_bytes('{"type":"response.audio.done","response_id":"r"}') == 0

    def test_a_frame_cut_inside_the_delta_counts_nothing(self) -> None:
        assert audio_delta_bytes('{"type":"response.audio.delta","delta":"AAAA') == 0


class TestParseControl:
    def test_an_object_is_parsed_from_text_or_bytes(self) -> None:
        event = {"type": "session.update", "session": {"voice": {"name": "en-US-AvaNeural"}}}
        assert parse_control(json.dumps(event)) == event
        assert parse_control(json.dumps(event).encode()) == event

    @pytest.mark.parametrize("frame", ["not json", "[1, 2]", '"text"', "", "{"])
    def test_anything_but_a_json_object_is_none(self, frame: str) -> None:
        assert parse_control(frame) is None


# --- close codes ---------------------------------------------------------------------------------


class TestCloseCodes:
    @pytest.mark.parametrize(
        ("received", "sent"),
        [
            (1000, 1000),
            (1001, 1001),
            (1008, 1008),
            (1011, 1011),
            (4000, 4000),
            (3000, 3000),
            (4999, 4999),
            (1005, 1000),  # no status: it ended normally as far as anyone can tell
            (1006, 1011),  # dropped without a close frame
            (1015, 1011),  # TLS failure
            (None, 1011),
            (1004, 1011),
            (999, 1011),
            (2000, 1011),
            (5000, 1011),
        ],
    )
    def test_the_code_passed_on_is_one_a_peer_may_send(
        self, received: int | None, sent: int
    ) -> None:
        assert close_code_for_peer(received) == sent

    def test_a_long_reason_is_cut_to_123_bytes_without_splitting_a_character(self) -> None:
        reason = close_reason("é" * 100)
        assert reason == "é" * 61
        assert len(reason.encode()) <= 123
        assert close_reason("upstream closed") == "upstream closed"


# --- the connect request -------------------------------------------------------------------------


class TestConnectRequest:
    def test_the_sdks_parameters_and_ours_are_told_apart(self) -> None:
        query = {
            "api-version": "2026-04-10",
            "model": "gpt-realtime",
            "x-ms-client-sdk": "azsdk-python-ai-voicelive/1.3.1",
            "api-key": "secret",
            "conversation-key": "crm-4711",
            "locale": "en_gb",
            "greeting": "formal",
        }
        request = connect_request(query, {})
        assert request.api_version == "2026-04-10"
        assert request.model == "gpt-realtime"
        assert request.extra_query == {}  # none of these go upstream as extras
        assert request.conversation_key == "crm-4711"
        assert request.locale == "en-GB"
        assert request.greeting == "formal"

    def test_agent_mode_parameters_are_forwarded(self) -> None:
        query = {
            "api-version": "2026-04-10",
            "agent-name": "support-agent",
            "agent-project-name": "contoso-project",
            "agent-version": "3",
            "x-ms-client-sdk": "azsdk-python-ai-voicelive/1.3.1",
            "conversation-key": "crm-4711",
        }
        request = connect_request(query, {})
        assert request.model is None
        assert request.extra_query == {
            "agent-name": "support-agent",
            "agent-project-name": "contoso-project",
            "agent-version": "3",
        }

    def test_ours_can_come_as_x_headers_trimmed(self) -> None:
        headers = {"x-conversation-key": "  crm-4711 ", "x-locale": "FR-ca", "x-greeting": " g "}
        request = connect_request({"model": "gpt-realtime"}, headers)
        assert (request.conversation_key, request.locale, request.greeting) == (
            "crm-4711",
            "fr-CA",
            "g",
        )
        assert request.extra_query == {}

    def test_the_query_wins_over_a_header(self) -> None:
        request = connect_request(
            {"locale": "de-CH", "conversation-key": "q"},
            {"x-locale": "en-US", "x-conversation-key": "h"},
        )
        assert (request.locale, request.conversation_key) == ("de-CH", "q")

    def test_blank_values_are_absent(self) -> None:
        request = connect_request({"conversation-key": "   ", "locale": ""}, {"x-greeting": " "})
        assert (request.conversation_key, request.locale, request.greeting) == (None, None, None)

    @pytest.mark.parametrize("locale", ["en@GB", "en-", "en-GB-x-private", "12", "e"])
    def test_a_bad_locale_is_refused(self, locale: str) -> None:
        with pytest.raises(ValueError, match="BCP 47"):
            connect_request({"locale": locale}, {})

    def test_a_bad_locale_in_a_header_is_refused(self) -> None:
        with pytest.raises(ValueError, match="BCP 47"):
            connect_request({}, {"x-locale": "not a locale"})

    def test_a_conversation_key_over_200_characters_is_refused(self) -> None:
        assert connect_request({"conversation-key": "k" * 200}, {}).conversation_key == "k" * 200
        with pytest.raises(ValueError, match="conversation-key"):
            connect_request({"conversation-key": "k" * 201}, {})
        with pytest.raises(ValueError, match="conversation-key"):
            connect_request({}, {"x-conversation-key": "k" * 201})
