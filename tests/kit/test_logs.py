"""Log lines are JSON, and a key a browser put in the relay's URL never reaches them."""

from __future__ import annotations

import json
import logging
import sys

from service.kit.logs import JsonFormatter

KEY = "cms_s3cr3t-key_value"


def _formatted(msg: str, *args: object) -> dict[str, object]:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, msg, args, None)
    line: dict[str, object] = json.loads(JsonFormatter().format(record))
    return line


def test_a_key_in_the_handshake_url_is_redacted_from_the_servers_log_line() -> None:
    # The line uvicorn writes for every accepted WebSocket, with the path and its query.
    path = f"/voice-live/realtime?api-version=2026-04-10&api-key={KEY}&model=gpt-realtime"
    line = _formatted('%s - "WebSocket %s" [accepted]', "127.0.0.1:50000", path)

    assert KEY not in json.dumps(line)
    assert "api-key=[redacted]&model=gpt-realtime" in str(line["msg"])


def test_keys_in_any_spelling_or_position_are_redacted() -> None:
    for query in (f"API-KEY={KEY}", f"api_key={KEY}", f"x=1&api-key={KEY}"):
        line = _formatted("GET /v1/x?%s HTTP/1.1", query)
        assert KEY not in str(line["msg"]), query


def test_a_key_in_a_traceback_is_redacted_too() -> None:
    try:
        raise RuntimeError(f"cannot open ws://relay/voice-live/realtime?api-key={KEY}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)

    assert KEY not in line
    assert "api-key=[redacted]" in json.loads(line)["exc"]


def test_other_text_is_left_alone() -> None:
    assert _formatted("delivery %s completed", "dlv_1")["msg"] == "delivery dlv_1 completed"
