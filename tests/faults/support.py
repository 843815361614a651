"""What the fault tests share: an agent on a plain WebSocket client (it sees every frame exactly
as the relay passed it on, where the SDK would refuse garbage itself), and reads of the public
API that wait for a final state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.live.harness import EVENT_TIMEOUT, Live, ws_url

FINAL = ("completed", "interrupted", "failed", "expired", "skipped")


@dataclass
class RawAgent:
    """A relayed agent that records every message it receives, text or binary, as it came."""

    ws: aiohttp.ClientWebSocketResponse
    session_id: str = ""
    voicelive_id: str = ""
    frames: list[tuple[aiohttp.WSMsgType, str | bytes]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for message in self.ws:
            self.frames.append((message.type, message.data))

    async def closed(self) -> None:
        """Returns once the relay closed the agent's connection."""
        assert self.reader is not None
        async with asyncio.timeout(EVENT_TIMEOUT):
            await asyncio.wait({self.reader})


@contextlib.asynccontextmanager
async def raw_agent(live: Live) -> AsyncIterator[RawAgent]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(live), headers={"api-key": live.api.keys["agent-1"]}) as ws,
    ):
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"
        agent = RawAgent(ws, voicelive_id=created["session"]["id"])
        agent.session_id = await live._session_id_of(agent.voicelive_id)
        agent.reader = asyncio.create_task(agent.read())
        try:
            yield agent
        finally:
            agent.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent.reader


async def audit_verifies(live: Live) -> dict[str, Any]:
    response = await live.api.http.get("/v1/audit/verify", headers=live.api.as_("audrey"))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["ok"] is True, result
    return result


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the process logged at ERROR or worse: the service's own errors, and the server's
    "Exception in ASGI application" tracebacks."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
