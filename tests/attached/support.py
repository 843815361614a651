"""What the attached-session tests share: a TCP proxy that can cut the control channel for real,
an attached agent on the official SDK whose connector may go through that proxy, and a few reads
of the service's public API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import attach
from tests.live.harness import EVENT_TIMEOUT, Agent, Live, until


@contextlib.asynccontextmanager
async def attached_agent(
    live: Live,
    *,
    service_url: str | None = None,
    key: str = "agent-1",
    session: dict[str, Any] | None = None,
    configure: bool = True,
    **attach_args: Any,
) -> AsyncIterator[Agent]:
    """An agent on the official SDK, connected straight to Voice Live (the simulator), its
    connection attached with the connector to ``service_url`` (default: the service itself). With
    ``configure`` it sends its session.update and waits for session.updated, as agents do."""
    async with (
        connect(
            endpoint=live.simulator.endpoint,
            credential=AzureKeyCredential("upstream-key"),
            model="gpt-realtime",
        ) as connection,
        attach(
            connection,
            service_url=service_url or live.base_url,
            api_key=live.api.keys[key],
            **attach_args,
        ) as attached,
    ):
        agent = Agent(connection, source=attached, session_id=attached.id)
        agent.start()
        try:
            created = await agent.next("session.created")
            agent.voicelive_id = created.session.id
            if configure:
                await connection.session.update(
                    session=session or {"modalities": ["text", "audio"]}
                )
                await agent.next("session.updated")
            yield agent
        finally:
            await agent.stop()


async def session_of(live: Live, session_id: str) -> dict[str, Any]:
    response = await live.api.http.get(
        f"/v1/sessions/{session_id}", headers=live.api.as_("agent-1")
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def until_closed(
    live: Live, session_id: str, *, within: float = EVENT_TIMEOUT
) -> dict[str, Any]:
    """The session's record once it says closed."""
    async with asyncio.timeout(within):
        while True:
            session = await session_of(live, session_id)
            if session["state"] == "closed":
                return session
            await asyncio.sleep(0.02)


async def until_channel(live: Live, session_id: str, *, up: bool) -> None:
    """Wait until the service has its control channel (``up``) or has noticed it is gone.
    Nothing public says so (by design: deliveries just wait), so this reads the engine's pause
    flag; it only synchronizes the test with the service (a fault injected before the channel
    first opened would test something else): every assertion is on what the API and Voice Live
    show."""
    engine = live.app.state.live.get(session_id)
    assert engine is not None, "the session is not held by this service"
    await until(lambda: engine.conductor.paused is not up)


def control_ws_url(live: Live, session_id: str) -> str:
    base = live.base_url.replace("http://", "ws://", 1)
    return f"{base}/v1/sessions/{session_id}/control"
