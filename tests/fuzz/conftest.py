"""One real server for the whole fuzz run, on a database of its own with data to reach deep into.

The server runs in a thread with its own event loop: schemathesis calls it synchronously (over
``requests``), which would block a loop shared with the test. The figures of the run (requests per
role and kind of input, answers by status) are printed at the end of the pytest session.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from service.app import create_app
from service.kit.serving import serving
from service.settings import Settings
from tests.conftest import PostgresDatabases
from tests.helpers import ADMIN_KEY, auth

# One principal per role, holding that role alone.
ROLES = ("admin", "editor", "approver", "agent", "auditor")
HOLDER = {"editor": "alice", "approver": "bob", "agent": "agent-1", "auditor": "audrey"}


@dataclass
class Figures:
    """What the fuzz run did, for the summary at the end of the session."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, mode)
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[tuple[str, int]] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    integrity: dict[str, int] = field(default_factory=dict)  # records checked against the audit
    operations: set[str] = field(default_factory=set)
    seconds: float = 0.0


FIGURES = Figures()


@dataclass
class Target:
    """The server under fuzz and the seeded things a case may address."""

    base_url: str
    keys: dict[str, str]  # role -> key
    known: dict[str, list[str]]  # path parameter -> identifiers that exist
    database_url: str


class ServerThread:
    """``service.kit.serving.serving`` in a thread of its own, until ``stop``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread by start/stop
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(create_app(self.settings)) as base_url:
            self.base_url = base_url
            self._ready.set()
            await self._stop.wait()

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError("the fuzz server did not start") from self._error
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self._error is not None:
            raise self._error


@pytest.fixture(scope="module")
def fuzz_database(
    tmp_path_factory: pytest.TempPathFactory,
    template_database: str,
    postgres: PostgresDatabases | None,
) -> Iterator[str]:
    """A migrated database for the module's server."""
    if postgres is None:
        path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
        shutil.copyfile(template_database, path)
        yield f"sqlite:///{path}"
        return
    name = f"cms_fuzz_{uuid.uuid4().hex[:12]}"
    url = postgres.create(name, template=template_database)
    yield url
    postgres.drop(name)


def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.is_success, response.text
    body: dict[str, object] = response.json()
    return body


def seed(http: httpx.Client) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Keys for each role; phrases in every status; a greeting policy; a live attached session
    with a delivery. Returns the keys and the identifiers by path parameter name."""
    keys = {"admin": ADMIN_KEY}
    for role, principal in HOLDER.items():
        created = _ok(
            http.post(
                "/v1/api-keys",
                json={"principal": principal, "roles": [role]},
                headers=auth(ADMIN_KEY),
            )
        )
        keys[role] = str(created["key"])
    editor, approver = auth(keys["editor"]), auth(keys["approver"])
    texts = {
        "en-US": "This call is recorded, {{name}}.",
        "fr-FR": "Cet appel est enregistré, {{name}}.",
    }
    for key in ("recording", "ai-disclosure"):
        _ok(
            http.post(
                "/v1/phrases",
                json={
                    "key": key,
                    "title": key,
                    "category": "disclosure",
                    "default_locale": "en-US",
                },
                headers=editor,
            )
        )
        body = {"texts": texts, "variables": [{"name": "name", "max_length": 40}]}
        for _ in range(3):  # 1: approved, 2: in review, 3: draft
            _ok(http.post(f"/v1/phrases/{key}/versions", json=body, headers=editor))
        _ok(http.post(f"/v1/phrases/{key}/versions/1/submit", headers=editor))
        _ok(http.post(f"/v1/phrases/{key}/versions/1/approve", headers=approver))
        _ok(http.post(f"/v1/phrases/{key}/versions/2/submit", headers=editor))
    _ok(
        http.post(
            "/v1/greeting-policies",
            json={"name": "welcome", "mode": "pregenerated", "phrase_key": "recording"},
            headers=editor,
        )
    )
    agent = auth(keys["agent"])
    session = _ok(http.post("/v1/sessions", json={"greeting": "none"}, headers=agent))
    delivery = _ok(
        http.post(
            f"/v1/sessions/{session['id']}/deliveries",
            json={"phrase_key": "recording", "variables": {"name": "Alex"}},
            headers=agent,
        )
    )
    known = {
        "key": ["recording", "ai-disclosure"],
        "number": ["1", "2", "3"],
        "name": ["welcome"],
        "session_id": [str(session["id"])],
        "delivery_id": [str(delivery["id"])],
    }
    return keys, known


@pytest.fixture(scope="module")
def fuzz_target(fuzz_database: str) -> Iterator[Target]:
    settings = Settings(
        database_url=fuzz_database,
        bootstrap_admin_key=SecretStr(ADMIN_KEY),
        auto_migrate=False,
        # The seeded attached session has no connector: keep it live for the whole run.
        attached_resume_timeout=3600,
        # The run sends hundreds of requests a second from one address, unknown keys among
        # them, by design: the abuse limits (tested on their own) would answer most with 429.
        rate_limit_per_second=0,
        auth_failure_limit_per_second=0,
        session_rate_limit_per_second=0,
        session_limit_per_key=0,
    )
    server = ServerThread(settings)
    base_url = server.start()
    try:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            keys, known = seed(http)
        yield Target(base_url, keys, known, fuzz_database)
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES.requests:
        return
    write = terminalreporter.write_line
    terminalreporter.section("API fuzzing (schemathesis)")
    total = sum(FIGURES.requests.values())
    negative = sum(n for (_, mode), n in FIGURES.requests.items() if mode == "negative")
    write(
        f"{total} requests to {len(FIGURES.operations)} operations in {FIGURES.seconds:.1f} s; "
        f"{negative} with inputs the schema forbids"
    )
    for role in (*ROLES, "anonymous"):
        pos = FIGURES.requests[(role, "positive")]
        neg = FIGURES.requests[(role, "negative")]
        write(f"  {role:<10} {pos + neg:>6} ({pos} valid inputs, {neg} invalid)")
    write("  answers: " + ", ".join(f"{s}: {n}" for s, n in sorted(FIGURES.statuses.items())))
    write("  phases: " + ", ".join(f"{p}: {n}" for p, n in sorted(FIGURES.phases.items())))
    if FIGURES.integrity:
        write(
            "  after the run, held and matching the verified audit chain (nothing lost): "
            + ", ".join(f"{name} {n}" for name, n in FIGURES.integrity.items())
        )
    if terminalreporter.verbosity > 0:
        for operation in sorted(FIGURES.operations):
            answers = sorted((s, n) for (o, s), n in FIGURES.by_operation.items() if o == operation)
            write(f"  {operation}: " + ", ".join(f"{s}x{n}" for s, n in answers))
