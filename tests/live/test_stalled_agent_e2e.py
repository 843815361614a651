"""An agent that stops reading its socket while a phrase streams to it: the relay does not buffer
without end (it waits for the agent), and ends the session with the reason once the wait passes
COMPLIANCE_RELAY_STALL_TIMEOUT."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import pytest

from service.simulator import SimulatorConfig
from tests.live.harness import EVENT_TIMEOUT, Live, relay_only

pytestmark = relay_only

STALL_LIMIT = 1.0
# About 200 s of speech: at 50 times real time its audio (~13 MB as base64) fills every buffer
# between the relay and an agent that reads nothing well within the phrase.
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 45)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=50)


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"relay_stall_timeout": STALL_LIMIT}


def open_and_never_read(live: Live) -> socket.socket:
    """A WebSocket handshake by hand on a socket with a tiny receive buffer, then silence."""
    host, port = live.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(EVENT_TIMEOUT)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /voice-live/realtime?api-version=2026-04-10&model=gpt-realtime HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"api-key: {live.api.keys['agent-1']}\r\n\r\n"
    )
    sock.sendall(request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


async def live_session(live: Live) -> dict[str, Any]:
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            response = await live.api.http.get(
                "/v1/sessions", params={"state": "live"}, headers=live.api.as_("agent-1")
            )
            items: list[dict[str, Any]] = response.json()["items"]
            if items:
                return items[0]
            await asyncio.sleep(0.05)


async def test_an_agent_that_stops_reading_has_its_session_ended_with_the_reason(
    live: Live,
) -> None:
    await live.approved_phrase("menu", LONG)
    sock = await asyncio.to_thread(open_and_never_read, live)
    try:
        session = await live_session(live)
        delivery = await live.deliver(session["id"], "menu")
        failed = await live.until_delivery(delivery["id"], "failed", "completed", within=30)
        async with asyncio.timeout(EVENT_TIMEOUT):
            while True:
                response = await live.api.http.get(
                    f"/v1/sessions/{session['id']}", headers=live.api.as_("agent-1")
                )
                ended = response.json()
                if ended["state"] == "closed":
                    break
                await asyncio.sleep(0.05)
    finally:
        sock.close()
    assert failed["status"] == "failed"  # the phrase could not reach the caller in full
    assert f"the agent read nothing for {STALL_LIMIT:g} s" in ended["end_reason"]
    assert ended["end_reason"] in failed["failure_reason"]
    # The upstream was told too, with a code that says why.
    [upstream] = live.simulator.sessions
    assert upstream._ws.close_code == 1008
