"""How an attached session ends on the agent's side: it closes its own Voice Live connection, or it
leaves the ``attach`` block without closing it (detaches). Either ends the session at once with a
reason naming the agent, and what was pending ends with that reason."""

from __future__ import annotations

from typing import Any

import pytest
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import attach
from service.simulator import SimulatorConfig
from tests.attached.support import attached_agent, until_closed
from tests.helpers import assert_problem
from tests.live.harness import Agent, Live

LONG = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
SHORT = "This call is recorded."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=10)  # the long phrase plays ~4 s: still playing when it ends


async def phrases(live: Live) -> None:
    await live.approved_phrase("menu", LONG)
    await live.approved_phrase("recording", SHORT)


async def playing_and_waiting(live: Live, agent: Agent) -> tuple[str, str]:
    """A long phrase playing and a short one queued behind it."""
    playing = await live.deliver(agent.session_id, "menu")
    await live.until_delivery(playing["id"], "speaking")
    waiting = await live.deliver(agent.session_id, "recording")
    assert waiting["status"] == "queued"
    return playing["id"], waiting["id"]


async def ended(live: Live, *delivery_ids: str) -> list[dict[str, Any]]:
    return [
        await live.until_delivery(i, "failed", "expired", "completed", "interrupted")
        for i in delivery_ids
    ]


async def test_the_agent_closing_its_connection_ends_the_session_with_its_reason(
    live: Live,
) -> None:
    await phrases(live)
    async with attached_agent(live) as agent:
        playing, waiting = await playing_and_waiting(live, agent)
        await agent.connection.close(code=1000, reason="caller hung up")
        session = await until_closed(live, agent.session_id)
        first, second = await ended(live, playing, waiting)
        late = await live.api.http.post(
            f"/v1/sessions/{agent.session_id}/deliveries",
            json={"phrase_key": "recording"},
            headers=live.api.as_("agent-1"),
        )
        assert_problem(late, 409, "session-not-live")
    reason = session["end_reason"]
    assert "agent closed" in reason
    assert "caller hung up" in reason
    assert "upstream" not in reason  # not taken for a drop by Voice Live
    assert first["status"] == "failed"
    assert reason in first["failure_reason"]
    assert second["status"] == "expired"
    assert reason in second["failure_reason"]
    assert second["sent_at"] is None


async def test_leaving_the_attach_block_without_closing_detaches_and_ends_the_session(
    live: Live,
) -> None:
    await phrases(live)
    async with connect(
        endpoint=live.simulator.endpoint,
        credential=AzureKeyCredential("upstream-key"),
        model="gpt-realtime",
    ) as connection:
        async with attach(
            connection, service_url=live.base_url, api_key=live.api.keys["agent-1"]
        ) as attached:
            agent = Agent(connection, source=attached, session_id=attached.id)
            agent.start()
            try:
                await agent.next("session.created")
                playing, waiting = await playing_and_waiting(live, agent)
            finally:
                await agent.stop()
        session = await until_closed(live, attached.id)
        first, second = await ended(live, playing, waiting)
        # ... while the agent's own connection is untouched and still its own.
        await connection.session.update(session={"modalities": ["text", "audio"]})
        async for event in connection:
            if event.type == "session.updated":
                break
    reason = session["end_reason"]
    assert "agent detached" in reason
    assert "attach block" in reason
    assert first["status"] == "failed"
    assert reason in first["failure_reason"]
    assert second["status"] == "expired"
    assert reason in second["failure_reason"]


async def test_a_session_ended_by_the_agent_is_ended_once_with_the_first_reason(
    live: Live,
) -> None:
    """Closing the connection inside the block, then leaving the block: the close is the end,
    the detach adds nothing (no second end, no other reason)."""
    async with attached_agent(live) as agent:
        await agent.connection.close(code=1000, reason="done for today")
        first = await until_closed(live, agent.session_id)
    later = await until_closed(live, agent.session_id)
    assert later["end_reason"] == first["end_reason"]
    assert later["ended_at"] == first["ended_at"]
    assert "done for today" in later["end_reason"]


async def test_once_the_attach_block_has_returned_the_session_is_already_over(
    live: Live,
) -> None:
    """``attach`` waits for the service to confirm the end before it returns: an agent that
    then reads its session, or its deliveries, finds them ended, not still live and queued."""
    await phrases(live)
    async with attached_agent(live) as agent:
        _, waiting = await playing_and_waiting(live, agent)
    session = await live.api.http.get(
        f"/v1/sessions/{agent.session_id}", headers=live.api.as_("agent-1")
    )
    record = await live.delivery(waiting)
    assert (session.json()["state"], record["status"]) == ("closed", "expired")
