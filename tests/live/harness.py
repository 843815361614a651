"""A real service on a real port in front of a real simulator, and agents that use the official
SDK: the parts a user runs, wired the way a user wires them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.ai.voicelive.models import ServerEvent
from azure.core.credentials import AzureKeyCredential
from fastapi import FastAPI

from service.connector import attach
from service.simulator import Simulator
from tests.helpers import Api

EVENT_TIMEOUT = 10.0
# For a test of the relay itself (its handshake, its sockets, caller audio through it): it runs
# for relayed sessions only, where the others run for both kinds.
relay_only = pytest.mark.parametrize("session_kind", ["relay"])


@dataclass
class Live:
    """The service under test, its simulator upstream, and an API client with keys per role."""

    app: FastAPI
    base_url: str
    api: Api
    simulator: Simulator
    kind: str = "relay"  # how agents reach Voice Live: through the relay, or "attached"

    async def approved_phrase(
        self, key: str, text: str, *, category: str = "disclosure", **version: Any
    ) -> None:
        await self.api.create_phrase(key, category=category)
        await self.api.approved_version(key, {"en-US": text}, **version)

    async def deliver(
        self, session_id: str, phrase_key: str, *, who: str = "agent-1", **body: Any
    ) -> dict[str, Any]:
        response = await self.api.http.post(
            f"/v1/sessions/{session_id}/deliveries",
            json={"phrase_key": phrase_key, **body},
            headers=self.api.as_(who),
        )
        assert response.status_code in (200, 201), response.text
        result: dict[str, Any] = response.json()
        return result

    async def delivery(self, delivery_id: str) -> dict[str, Any]:
        response = await self.api.http.get(
            f"/v1/deliveries/{delivery_id}", headers=self.api.as_("agent-1")
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def until_delivery(
        self, delivery_id: str, *statuses: str, within: float = EVENT_TIMEOUT
    ) -> dict[str, Any]:
        """Poll the record until it reaches one of ``statuses``."""
        async with asyncio.timeout(within):
            while True:
                record = await self.delivery(delivery_id)
                if record["status"] in statuses:
                    return record
                await asyncio.sleep(0.02)

    async def deliveries(self, session_id: str) -> list[dict[str, Any]]:
        response = await self.api.http.get(
            f"/v1/sessions/{session_id}/deliveries", headers=self.api.as_("agent-1")
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    @contextlib.asynccontextmanager
    async def agent(
        self, *, key: str = "agent-1", session: dict[str, Any] | None = None, **query: str
    ) -> AsyncIterator[Agent]:
        """An agent connected through the relay with the SDK, its session configured."""
        async with agent_with(self, key=key, session=session, query=query) as agent:
            yield agent

    async def _session_id_of(self, voicelive_id: str) -> str:
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                response = await self.api.http.get(
                    f"/v1/sessions/{voicelive_id}", headers=self.api.as_("agent-1")
                )
                if response.status_code == 200:
                    session_id: str = response.json()["id"]
                    return session_id
                await asyncio.sleep(0.02)


@dataclass
class Agent:
    """Reads every server event in the background, as an agent's own loop would."""

    connection: VoiceLiveConnection
    # What the agent iterates for its events: the connection, or the connector wrapping it.
    source: Any = None
    events: list[ServerEvent] = field(default_factory=list)
    voicelive_id: str = ""
    session_id: str = ""
    _cursor: int = 0
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    async def _read(self) -> None:
        async for event in self.source or self.connection:
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    async def next(
        self,
        kind: str,
        where: Callable[[ServerEvent], bool] = lambda e: True,
        within: float = EVENT_TIMEOUT,
    ) -> Any:
        """The next event of ``kind`` (after the last one returned) that matches ``where``."""
        async with asyncio.timeout(within), self._arrived:
            while True:
                for index in range(self._cursor, len(self.events)):
                    event = self.events[index]
                    if event.type == kind and where(event):
                        self._cursor = index + 1
                        return event
                await self._arrived.wait()

    def of_type(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]


# --- helpers added by the end-to-end scenario tests
# (appended only: everything above is shared and unchanged, so these imports come here)

import base64  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from array import array  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from service.simulator import SimulatorSession  # noqa: E402

SAMPLE_RATE = 24000  # PCM16 mono, the Voice Live default input and output format


def pcm16_tone(ms: int, *, amplitude: float = 0.8, hz: float = 440.0) -> bytes:
    """``ms`` milliseconds of a sine at ``amplitude`` of full scale: loud enough for any VAD."""
    count = SAMPLE_RATE * ms // 1000
    samples = array(
        "h",
        (
            round(amplitude * 32767 * math.sin(2 * math.pi * hz * n / SAMPLE_RATE))
            for n in range(count)
        ),
    )
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


def pcm16_silence(ms: int) -> bytes:
    return bytes(SAMPLE_RATE * ms // 1000 * 2)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def send_audio(agent: Agent, audio: bytes, *, chunk_ms: int = 20) -> list[bytes]:
    """Send ``audio`` as ``input_audio_buffer.append`` events of ``chunk_ms`` each."""
    step = SAMPLE_RATE * chunk_ms // 1000 * 2
    chunks = [audio[i : i + step] for i in range(0, len(audio), step)]
    for chunk in chunks:
        await agent.connection.input_audio_buffer.append(audio=b64(chunk))
    return chunks


def barge_in_session(*, create_response: bool = False, **turn_detection: Any) -> dict[str, Any]:
    """A session whose caller can talk over a response (server VAD with interrupt_response)."""
    return {
        "modalities": ["text", "audio"],
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 0,
            "silence_duration_ms": 200,
            "create_response": create_response,
            "interrupt_response": True,
            "auto_truncate": False,
            **turn_detection,
        },
    }


def quiet_session() -> dict[str, Any]:
    """A session without turn detection: caller audio never starts or cuts a response."""
    return {"modalities": ["text", "audio"], "turn_detection": None}


class Connected(Protocol):
    """An agent of any kind: what it learnt from its ``session.created``."""

    voicelive_id: str


def upstream_of(live: Live, agent: Connected) -> SimulatorSession:
    """The simulator's record of the upstream connection behind ``agent``."""
    for session in live.simulator.sessions:
        if session.id == agent.voicelive_id:
            return session
    raise AssertionError(f"no upstream session {agent.voicelive_id!r}")


def response_creates(session: SimulatorSession) -> list[dict[str, Any]]:
    """The ``response.create`` events the upstream received, in order."""
    return [e for e in session.client_events if e.get("type") == "response.create"]


def pregenerated_text(event: dict[str, Any]) -> str | None:
    message = (event.get("response") or {}).get("pre_generated_assistant_message") or {}
    content = message.get("content") or [{}]
    text = content[0].get("text")
    return text if isinstance(text, str) else None


def creates_of(session: SimulatorSession, text: str) -> list[dict[str, Any]]:
    """The ``response.create`` events that carried ``text`` as the pre-generated message."""
    return [e for e in response_creates(session) if pregenerated_text(e) == text]


def upstream_close(session: SimulatorSession) -> tuple[int | None, str | None]:
    """The close code and reason the simulator's side of the connection saw."""
    ws = session._ws
    return ws.close_code, ws.close_reason


def ws_url(live: Live, **query: str) -> str:
    """The relay's WebSocket URL with the Voice Live query (for clients other than the SDK)."""
    base = live.base_url.replace("http://", "ws://", 1)
    params = {"api-version": "2026-04-10", "model": "gpt-realtime", **query}
    return f"{base}/voice-live/realtime?{urlencode(params)}"


class Arrivals:
    """The order in which every simulator connection received client frames (audio included),
    which the simulator's own record (audio counted apart) does not keep."""

    def __init__(self) -> None:
        self.by_session: dict[str, list[str]] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Arrivals:
        original = SimulatorSession._receive
        arrivals = self

        async def receive(self: SimulatorSession, message: str | bytes) -> None:
            kind = "?"
            with contextlib.suppress(ValueError, AttributeError):
                kind = str(json.loads(message).get("type"))
            arrivals.by_session.setdefault(self.id, []).append(kind)
            await original(self, message)

        monkeypatch.setattr(SimulatorSession, "_receive", receive)
        return self

    def of(self, agent: Agent) -> list[str]:
        return self.by_session.get(agent.voicelive_id, [])


async def create_greeting_policy(
    live: Live, name: str, phrase_key: str, *, is_default: bool = True, **fields: Any
) -> dict[str, Any]:
    response = await live.api.http.post(
        "/v1/greeting-policies",
        json={
            "name": name,
            "mode": "pregenerated",
            "phrase_key": phrase_key,
            "is_default": is_default,
            **fields,
        },
        headers=live.api.as_("alice"),
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@contextlib.asynccontextmanager
async def agent_with(
    live: Live,
    *,
    key: str = "agent-1",
    session: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> AsyncIterator[Agent]:
    """Like ``Live.agent`` but with extra handshake headers (``x-conversation-key``, ...) and any
    query parameter name (``conversation-key`` is no Python identifier). For ``live.kind ==
    "attached"`` the agent connects straight to Voice Live and attaches its connection with the
    connector, the same parameters given to ``attach``."""
    if live.kind == "attached":
        opened = _attached_agent(live, key, headers or {}, query or {})
    else:
        opened = _relayed_agent(live, key, headers or {}, query or {})
    async with opened as agent:
        try:
            created = await agent.next("session.created")
            agent.voicelive_id = created.session.id
            await agent.connection.session.update(
                session=session or {"modalities": ["text", "audio"]}
            )
            await agent.next("session.updated")
            agent.session_id = agent.session_id or await live._session_id_of(agent.voicelive_id)
            yield agent
        finally:
            await agent.stop()


@contextlib.asynccontextmanager
async def _relayed_agent(
    live: Live, key: str, headers: dict[str, str], query: dict[str, str]
) -> AsyncIterator[Agent]:
    async with connect(
        endpoint=live.base_url,
        credential=AzureKeyCredential(live.api.keys[key]),
        model="gpt-realtime",
        query=query,
        headers=headers,
    ) as connection:
        agent = Agent(connection)
        agent.start()
        yield agent


@contextlib.asynccontextmanager
async def _attached_agent(
    live: Live, key: str, headers: dict[str, str], query: dict[str, str]
) -> AsyncIterator[Agent]:
    ours = {k.removeprefix("x-"): v for k, v in headers.items() if k.startswith("x-")}
    ours.update(query)
    async with (
        connect(
            endpoint=live.simulator.endpoint,
            credential=AzureKeyCredential("upstream-key"),
            model="gpt-realtime",
        ) as connection,
        attach(
            connection,
            service_url=live.base_url,
            api_key=live.api.keys[key],
            conversation_key=ours.get("conversation-key"),
            locale=ours.get("locale"),
            greeting=ours.get("greeting"),
        ) as attached,
    ):
        agent = Agent(connection, source=attached, session_id=attached.id)
        agent.start()
        yield agent


async def until(predicate: Callable[[], bool], *, within: float = EVENT_TIMEOUT) -> None:
    """Poll ``predicate`` until it holds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state of another component, no event to wait on
            await asyncio.sleep(0.01)
