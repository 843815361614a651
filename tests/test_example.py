"""The README's "Attached sessions" walk-through, run as a newcomer runs it: the simulator and the
service as processes of their own in an empty directory, keys from the command line, a phrase
approved over HTTP by a second person, then ``examples/attached_agent.py`` as a process too."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import auth, cli_environment, run_cli

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attached_agent.py"
ADMIN_KEY = "example-admin-key-0123456789"
START_TIMEOUT = 30.0  # seconds a process has to be ready
EXAMPLE_TIMEOUT = 120.0
PHRASE = {
    "key": "call-recording",
    "title": "Call recording disclosure",
    "category": "disclosure",
    "default_locale": "en-US",
}
VERSION = {
    "texts": {"en-US": "This call is recorded for quality and training, {{name}}."},
    "variables": [{"name": "name", "max_length": 40}],
}


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def logs(self) -> str:
        def tail(path: Path) -> str:
            return "\n".join(path.read_text(errors="replace").splitlines()[-30:])

        return (
            f"--- {self.name} stdout:\n{tail(self.out)}\n--- {self.name} stderr:\n{tail(self.err)}"
        )

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            assert self.proc.poll() is None, f"{self.name} exited before {what}\n{self.logs()}"
            assert time.monotonic() < deadline, f"no {what} in {START_TIMEOUT} s\n{self.logs()}"
            time.sleep(0.1)


@contextlib.contextmanager
def started(name: str, *args: str, cwd: Path, env: dict[str, str]) -> Iterator[Running]:
    """``compliance-service ARGS`` in the background, its output in files; stopped however the
    test ends (terminated, then killed if it has not stopped within 10 s)."""
    out, err = cwd / f"{name}.out", cwd / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own module
            [sys.executable, "-m", "service", *args], cwd=cwd, env=env, stdout=stdout, stderr=stderr
        )
        try:
            yield Running(name, proc, out, err)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def new_key(principal: str, role: str, cwd: Path, env: dict[str, str]) -> str:
    result = run_cli("keys", "create", "--principal", principal, "--role", role, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def approve_phrase(base: str, editor: str, approver: str) -> None:
    """The README walk-through's phrase: one person drafts and submits, another approves."""
    with httpx.Client(base_url=base, timeout=10) as http:

        def post(key: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            response = http.post(f"/v1/phrases{path}", json=body, headers=auth(key))
            assert response.status_code in (200, 201), response.text
            answer: dict[str, Any] = response.json()
            return answer

        post(editor, "", PHRASE)
        post(editor, "/call-recording/versions", VERSION)
        post(editor, "/call-recording/versions/1/submit")
        approved = post(approver, "/call-recording/versions/1/approve", {"comment": "legal"})
    assert approved["status"] == "approved"


def session_state(base: str, session_id: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/v1/sessions/{session_id}", headers=auth(key), timeout=10)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


def test_the_example_agent_has_an_approved_phrase_spoken_into_its_own_connection(
    tmp_path: Path,
) -> None:
    env = cli_environment(None)  # the default SQLite file, in the temporary directory
    with started("simulator", "simulator", "--port", "0", cwd=tmp_path, env=env) as simulator:
        simulator.wait_until(lambda: simulator.out.read_text().endswith("\n"), "endpoint printed")
        endpoint = simulator.out.read_text().strip()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve_env = {
            **env,
            "COMPLIANCE_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "COMPLIANCE_VOICELIVE_ENDPOINT": endpoint,
            "COMPLIANCE_VOICELIVE_API_KEY": "simulator",  # it takes any key
        }
        serve_args = ("serve", "--host", "127.0.0.1", "--port", str(port))
        with started("serve", *serve_args, cwd=tmp_path, env=serve_env) as serve:
            serve.wait_until(lambda: healthy(base), "answer on /healthz")
            editor = new_key("alice", "editor", tmp_path, env)
            approver = new_key("bob", "approver", tmp_path, env)
            agent = new_key("voice-agent", "agent", tmp_path, env)
            approve_phrase(base, editor, approver)

            example = [str(EXAMPLE), "--service-url", base, "--agent-key", agent]
            example += ["--voicelive-endpoint", endpoint]
            example += ["--phrase", "call-recording", "--variable", "name=Alex"]
            result = subprocess.run(  # noqa: S603 - our own interpreter running our own example
                [sys.executable, *example],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=EXAMPLE_TIMEOUT,
                check=False,
            )
            report = f"{result.stdout}\n{result.stderr}\n{serve.logs()}\n{simulator.logs()}"
            assert result.returncode == 0, report

            lines = result.stdout.splitlines()
            session_id = next(line.split()[-1] for line in lines if line.startswith("attached:"))
            delivery = json.loads(next(ln for ln in lines if ln.startswith("delivery:"))[9:])
            assert delivery["status"] == "completed", report
            assert delivery["transcript_verified"] is True, report
            assert delivery["text"] == "This call is recorded for quality and training, Alex."
            # The agent saw its session configured, then the phrase spoken, with no audio shown.
            assert lines.index("event session.updated") < lines.index("event response.created")
            assert f"event response.audio_transcript.done: {delivery['text']!r}" in lines
            assert "audio chunks, not shown" in result.stdout
            # Leaving the attach block ends the service's session (it is told before the exit,
            # and records it right after).
            serve.wait_until(
                lambda: session_state(base, session_id, agent)["state"] == "closed",
                "closed session",
            )
            session = session_state(base, session_id, agent)
            assert session["end_reason"].startswith("the agent detached"), session
