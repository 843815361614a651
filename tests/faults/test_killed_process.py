"""The service is killed (a real SIGKILL of a real ``compliance-service serve`` process) while a
relayed session and an attached one each have a phrase playing and more queued, then started
again on the same database. Every delivery ends in a recorded final state with the reason, none
vanishes, both sessions are closed with the reason, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import attach
from service.simulator import Simulator, SimulatorConfig
from tests.faults.support import FINAL
from tests.helpers import ADMIN_KEY, Api, cli_environment
from tests.live.conftest import GENEROUS_LIMITS
from tests.live.harness import Agent
from tests.test_example import Running, free_port, healthy, started

WebSocket = aiohttp.ClientWebSocketResponse
REASON = "the service restarted while the session was live"
WAIT = 10.0  # seconds any one state may take to show
# ~41 s of speech at real-time pacing: it is still playing when the process dies.
LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
QUEUED = {
    "first": "This call is recorded.",
    "second": "Your reference number follows.",
    "third": "Thank you for waiting.",
}


def environment(database_url: str, simulator: Simulator) -> dict[str, str]:
    limits = {f"COMPLIANCE_{name.upper()}": str(value) for name, value in GENEROUS_LIMITS.items()}
    return cli_environment(
        database_url,
        COMPLIANCE_BOOTSTRAP_ADMIN_KEY=ADMIN_KEY,
        COMPLIANCE_VOICELIVE_ENDPOINT=simulator.endpoint,
        COMPLIANCE_VOICELIVE_API_KEY="upstream-key",
        COMPLIANCE_LOG_LEVEL="WARNING",
        **limits,
    )


@contextlib.contextmanager
def serve(name: str, port: int, cwd: Path, env: dict[str, str]) -> Iterator[Running]:
    """``compliance-service serve`` on 127.0.0.1:``port``; stopped however the test ends."""
    with started(name, "serve", "--host", "127.0.0.1", "--port", str(port), cwd=cwd, env=env) as p:
        yield p


async def until_healthy(process: Running, base: str) -> None:
    await asyncio.to_thread(process.wait_until, lambda: healthy(base), "health")


async def get(api: Api, path: str) -> dict[str, Any]:
    response = await api.http.get(path, headers=api.as_("audrey"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until_status(api: Api, delivery_id: str, *statuses: str) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            record = await get(api, f"/v1/deliveries/{delivery_id}")
            if record["status"] in statuses:
                return record
            await asyncio.sleep(0.1)


async def speak_and_queue(api: Api, session_id: str) -> list[str]:
    """A long phrase playing, three more waiting behind it: their ids, in request order."""
    ids = []
    for key in ("menu", *QUEUED):
        response = await api.http.post(
            f"/v1/sessions/{session_id}/deliveries",
            json={"phrase_key": key},
            headers=api.as_("agent-1"),
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    await until_status(api, ids[0], "speaking")
    for queued in ids[1:]:
        assert (await get(api, f"/v1/deliveries/{queued}"))["status"] == "queued"
    return ids


@contextlib.asynccontextmanager
async def relayed(base: str, key: str) -> AsyncIterator[tuple[WebSocket, str]]:
    """An agent on the relay (a plain client: it reads nothing but what tells its session)."""
    url = base.replace("http://", "ws://") + "/voice-live/realtime?model=gpt-realtime"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"api-key": key}) as ws,
    ):
        created = await ws.receive_json(timeout=WAIT)
        yield ws, created["session"]["id"]


async def until_dropped(ws: WebSocket) -> None:
    """Read until the connection ends."""
    async with asyncio.timeout(WAIT):
        while not ws.closed:
            await ws.receive()


async def test_a_killed_service_leaves_no_delivery_unfinished_after_its_restart(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with Simulator(SimulatorConfig(speed=1)) as simulator:
        env = environment(database_url, simulator)
        with serve("serve", port, tmp_path, env) as first:
            await until_healthy(first, base)
            async with httpx.AsyncClient(base_url=base, timeout=WAIT) as http:
                api = await Api.with_keys(http)
                for phrase_key, text in {"menu": LONG, **QUEUED}.items():
                    await api.create_phrase(phrase_key)
                    await api.approved_version(phrase_key, {"en-US": text})
            async with (
                httpx.AsyncClient(base_url=base, timeout=WAIT) as http,
                relayed(base, api.keys["agent-1"]) as (ws, voicelive_id),
                connect(
                    endpoint=simulator.endpoint,
                    credential=AzureKeyCredential("upstream-key"),
                    model="gpt-realtime",
                ) as connection,
                attach(connection, service_url=base, api_key=api.keys["agent-1"]) as attached,
                reading(Agent(connection, source=attached)),  # the agent's own event loop
            ):
                api.http = http
                relay_session = (await get(api, f"/v1/sessions/{voicelive_id}"))["id"]
                requested = {
                    relay_session: await speak_and_queue(api, relay_session),
                    attached.id: await speak_and_queue(api, attached.id),
                }

                first.proc.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(first.proc.wait, WAIT) == -signal.SIGKILL

                # The relayed agent's connection died with the process: no close frame came.
                await until_dropped(ws)
                assert ws.close_code == 1006
                # The attached agent's own Voice Live connection did not: its call goes on.
                assert not connection._connection.closed

                # Started again where it was, on the same database, as a supervisor would.
                with serve("serve-again", port, tmp_path, env) as second:
                    await until_healthy(second, base)
                    async with httpx.AsyncClient(base_url=base, timeout=WAIT) as again:
                        api.http = again
                        await after_the_restart(api, requested)
                    # The connector, reconnecting, is told its session is over, and stops.
                    async with asyncio.timeout(WAIT):
                        while attached.ended_reason is None:  # noqa: ASYNC110 - its own state
                            await asyncio.sleep(0.1)
                    assert "refused" in attached.ended_reason
                    assert not connection._connection.closed  # never the service's to end


@contextlib.asynccontextmanager
async def reading(agent: Agent) -> AsyncIterator[Agent]:
    agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


async def after_the_restart(api: Api, requested: dict[str, list[str]]) -> None:
    for session_id, ids in requested.items():
        session = await get(api, f"/v1/sessions/{session_id}")
        assert session["state"] == "closed"
        assert session["end_reason"] == REASON
        listed = await get(api, f"/v1/sessions/{session_id}/deliveries")
        by_id = {d["id"]: d for d in listed["items"]}
        assert sorted(by_id) == sorted(ids)  # none vanished, none appeared
        playing, *waiting = (by_id[i] for i in ids)
        assert (playing["status"], playing["failure_reason"]) == ("failed", REASON)
        assert playing["first_audio_at"] is not None  # it had been heard in part
        assert playing["ended_at"] is not None
        for record in waiting:
            assert (record["status"], record["failure_reason"]) == ("expired", REASON)
            assert record["sent_at"] is None
        assert all(d["status"] in FINAL for d in by_id.values())
    audit = await get(api, "/v1/audit?limit=500")
    actions = {(e["action"], e["subject_id"]) for e in audit["items"]}
    for session_id, (playing_id, *waiting_ids) in requested.items():
        assert ("session.ended", session_id) in actions
        assert ("delivery.failed", playing_id) in actions
        assert all(("delivery.expired", w) in actions for w in waiting_ids)
    verify = await get(api, "/v1/audit/verify")
    assert verify["ok"] is True, json.dumps(verify)
