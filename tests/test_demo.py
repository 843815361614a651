"""The README's main command, run as a newcomer runs it: a process of its own, in an empty
directory, with nothing set up."""

from __future__ import annotations

import re
import wave
from pathlib import Path

from tests.helpers import cli_environment, run_cli


def test_demo_tells_the_whole_story_and_leaves_the_audio(tmp_path: Path) -> None:
    result = run_cli("demo", "--speed", "8", env=cli_environment(None), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert 'agent hears: "Hello, thank you for calling Contoso Bank.' in out
    assert "barge-in" in out
    assert "attempt 1: interrupted" in out
    assert "attempt 2: completed" in out
    assert re.search(r"disclosure delivery dlv_\w+: completed", out)
    assert "hash chain intact" in out
    with wave.open(str(tmp_path / "demo-agent-audio.wav")) as audio:
        assert audio.getframerate() == 24_000
        assert audio.getnframes() / 24_000 > 5  # the greeting and the disclosure, at least
    # The temporary database is gone; only the audio is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-agent-audio.wav"]
