"""A whole conversation at the most verbose log level, relayed and attached: no line of the log
holds an API key, the upstream key, or any of the audio that went either way."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator

import pytest

from service.kit.logs import FRAME_LOGGERS, JsonFormatter, configure_logging
from tests.live.harness import (
    Live,
    barge_in_session,
    pcm16_tone,
    send_audio,
)

TEXT = "Calls are recorded for quality and training purposes."


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.text.append(self.format(record))


@pytest.fixture
def everything_logged() -> Iterator[Lines]:
    """Logging as ``serve`` sets it up, at DEBUG, every line kept."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in FRAME_LOGGERS}
    configure_logging("DEBUG")
    lines = Lines()
    root.addHandler(lines)
    try:
        yield lines
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


def fragments(blob: str, size: int = 24) -> set[str]:
    """Pieces of a base64 payload long enough to be unmistakable if a log held them."""
    return {blob[i : i + size] for i in range(0, max(len(blob) - size, 1), size * 8)}


async def test_a_full_conversation_logs_no_key_and_no_audio(
    live: Live, everything_logged: Lines
) -> None:
    await live.approved_phrase("recording", TEXT)
    async with live.agent(session=barge_in_session()) as agent:
        delivered = await live.deliver(agent.session_id, "recording", wait=10)
        assert delivered["status"] == "completed"
        sent = await send_audio(agent, pcm16_tone(300))  # loud: server VAD hears it
        await agent.next("input_audio_buffer.speech_started")
        received = [e["delta"] for e in agent.of_type("response.audio.delta")]
    assert received, "audio reached the agent"
    assert everything_logged.text, "the run logged something at DEBUG"
    log = "\n".join(everything_logged.text)

    secrets = dict(live.api.keys)
    secrets["upstream"] = "upstream-key"
    for name, key in secrets.items():
        assert key not in log, f"the {name} key is in the log"
    audio = [base64.b64encode(chunk).decode() for chunk in sent] + received
    leaked = {piece for blob in audio for piece in fragments(blob) if piece in log}
    assert not leaked, f"audio in the log: {sorted(leaked)[:3]}"
    # The lines are there to be read: each is JSON, and those of the request carry its id.
    assert all(isinstance(json.loads(line), dict) for line in everything_logged.text)
