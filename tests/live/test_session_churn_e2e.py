"""Many sessions opening and closing: afterwards nothing of them is left in the process (no
task, no engine, no upstream HTTP session), no database connection is held, and each one's
record says it ended."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import pytest
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import attach
from service.deliveries.engine import SessionEngine
from tests.live.harness import EVENT_TIMEOUT, Live, ws_url

BATCH = 50


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def open_http_sessions() -> list[aiohttp.ClientSession]:
    return [s for s in gc.get_objects() if isinstance(s, aiohttp.ClientSession) and not s.closed]


async def relayed(live: Live, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(live), headers={"api-key": live.api.keys["agent-1"]}) as ws:
        created = await ws.receive_json(timeout=EVENT_TIMEOUT)
        assert created["type"] == "session.created"


async def attached(live: Live) -> None:
    async with (
        connect(
            endpoint=live.simulator.endpoint,
            credential=AzureKeyCredential("upstream-key"),
            model="gpt-realtime",
        ) as connection,
        attach(connection, service_url=live.base_url, api_key=live.api.keys["agent-1"]),
    ):
        await connection.session.update(session={"modalities": ["text", "audio"]})


async def settled(live: Live, tasks_before: int) -> None:
    """Wait (bounded) until every session's teardown has finished. The task count alone is not
    enough: a task of an earlier test ending meanwhile would hide a teardown still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENT_TIMEOUT
    while loop.time() < deadline:
        if (
            not len(live.app.state.live)
            and len(asyncio.all_tasks()) <= tasks_before
            and alive(SessionEngine) == 0
        ):
            return
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("session_kind", ["relay", "attached"])
async def test_a_thousand_sessions_leave_nothing_behind(live: Live, session_kind: str) -> None:
    count = 1000 if session_kind == "relay" else 300
    engine = live.app.state.sessionmaker.kw["bind"]
    async with aiohttp.ClientSession() as http:
        await relayed(live, http)  # what a first session loads once is not a leak
        tasks_before = len(asyncio.all_tasks())
        http_sessions_before = len(open_http_sessions())
        for start in range(0, count, BATCH):
            batch = range(start, min(start + BATCH, count))
            if session_kind == "relay":
                await asyncio.gather(*(relayed(live, http) for _ in batch))
            else:
                await asyncio.gather(*(attached(live) for _ in batch))
        await settled(live, tasks_before)
        assert len(live.app.state.live) == 0
        assert len(asyncio.all_tasks()) <= tasks_before
        assert alive(SessionEngine) == 0
        assert len(open_http_sessions()) <= http_sessions_before
        assert engine.sync_engine.pool.checkedout() == 0
    response = await live.api.http.get(
        "/v1/sessions", params={"state": "live"}, headers=live.api.as_("agent-1")
    )
    assert response.json()["items"] == []
    closed = await live.api.http.get(
        "/v1/sessions", params={"state": "closed", "limit": 1}, headers=live.api.as_("agent-1")
    )
    assert closed.json()["items"][0]["end_reason"]
