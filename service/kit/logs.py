"""Structured logging: one JSON object per line. Audit events ride along as ``audit_event``."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from service.kit.requests import request_id

# A key in a URL (the relay accepts ``?api-key=`` for browsers) must never reach a log line, e.g.
# through the server's access log of the WebSocket handshake.
_KEY_IN_URL = re.compile(r"(api[-_]key=)[^&\s\"'\\]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _KEY_IN_URL.sub(r"\1[redacted]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        audit_event = getattr(record, "audit_event", None)
        if audit_event is not None:
            entry["audit_event"] = audit_event
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # The whole line: a key may also sit in a traceback or an audit event's details.
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


# Libraries that write whole frames at DEBUG (audio included, and the key of a URL): never below
# INFO, whatever COMPLIANCE_LOG_LEVEL says.
FRAME_LOGGERS = (
    "azure.ai.voicelive",
    "websockets",
    "uvicorn.error",  # uvicorn hands it to websockets, which logs each frame at DEBUG
    "aiohttp.client",
    "aiohttp.websocket",
)


_DENIAL_NOISE = "ASGI callable returned without completing handshake."


class _DenialIsNotAnError(logging.Filter):
    """uvicorn (0.54, websockets-sansio) logs the line above at ERROR after every WebSocket
    refused with an HTTP denial response, although the refusal went out (Kludex/uvicorn#3138):
    each 401 or 429 of the relay would be an error line, and a flood of refusals a flood of
    them. The service's WebSocket routes always accept or deny, so the line says nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _DENIAL_NOISE


def quiet_websocket_denials() -> None:
    server_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialIsNotAnError) for f in server_log.filters):
        server_log.addFilter(_DenialIsNotAnError())


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in FRAME_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
