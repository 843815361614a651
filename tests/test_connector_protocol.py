"""The connector's wire helpers: pure functions both ends rely on."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest

from service.connector import protocol


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 959, 960, 961, 4800])
def test_the_decoded_length_of_base64_is_known_without_decoding(size: int) -> None:
    encoded = base64.b64encode((bytes(range(256)) * 20)[:size]).decode()
    assert protocol.base64_decoded_length(encoded) == size


@pytest.mark.parametrize(
    "frame",
    [{"op": "event"}, {"op": "event", "seq": "3"}, {"op": "event", "seq": -1}, {"seq": True}],
)
def test_a_frame_without_a_valid_number_is_refused(frame: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="seq"):
        protocol.sequence_number(frame)


def test_the_connector_imports_none_of_the_servers_packages() -> None:
    """An agent installs the SDK and aiohttp, not the service's database and web stack."""
    probe = (
        "import sys, service.connector; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'fastapi', 'starlette', 'alembic', 'pydantic_settings', 'uvicorn'}))"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("welcome", "interval"),
    [
        ({"op": "welcome", "received": 0, "audio_report_interval": 0.125}, 0.125),
        ({"op": "welcome", "received": 0, "audio_report_interval": 2}, 2.0),
        # An older service says nothing: the connector's own default.
        ({"op": "welcome", "received": 0}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": 0}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": -1}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": True}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": "0.1"}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": float("nan")}, protocol.AUDIO_REPORT_INTERVAL),
        ({"audio_report_interval": float("inf")}, protocol.AUDIO_REPORT_INTERVAL),
    ],
)
def test_the_audio_report_interval_is_the_welcomes_or_one_second(
    welcome: dict[str, object], interval: float
) -> None:
    assert protocol.AUDIO_REPORT_INTERVAL == 1.0
    assert protocol.report_interval(welcome) == interval
