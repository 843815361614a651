"""The greeting of an attached session: it waits for the agent's own session.updated (the service
only hears of it through the connector), survives a control channel that drops before it, and is
given once per conversation (tests/live/test_greetings_e2e.py already covers a second attach with
the same conversation key after the first ended; these are the attached-only cases)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.attached.support import attached_agent, until_channel, until_closed
from tests.live.harness import (
    EVENT_TIMEOUT,
    Agent,
    Live,
    create_greeting_policy,
    creates_of,
    response_creates,
    upstream_of,
)
from tests.proxy import Proxy

GREETING = "Hello, you are speaking with Contoso. This call may be recorded."


async def greeting_policy(live: Live) -> None:
    await live.approved_phrase("welcome", GREETING, category="greeting")
    await create_greeting_policy(live, "welcome", "welcome")


async def greeting_of(live: Live, session_id: str) -> dict[str, Any]:
    """The session's greeting record, once it exists."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            found = [d for d in await live.deliveries(session_id) if d["kind"] == "greeting"]
            if found:
                [greeting] = found
                return greeting
            await asyncio.sleep(0.02)


def index_of(agent: Agent, kind: str) -> int:
    return next(i for i, e in enumerate(agent.events) if e.type == kind)


def upstream_order(live: Live, agent: Agent) -> list[str]:
    return [str(e.get("type")) for e in upstream_of(live, agent).client_events]


async def test_the_greeting_waits_for_the_agents_session_update(live: Live) -> None:
    await greeting_policy(live)
    async with attached_agent(live, configure=False) as agent:
        await until_channel(live, agent.session_id, up=True)
        # The agent takes its time to configure its session (less than the 2 s the service
        # waits for an agent that never does): nothing may be spoken before.
        await asyncio.sleep(1.0)
        assert response_creates(upstream_of(live, agent)) == []
        assert agent.of_type("response.created") == []
        await agent.connection.session.update(session={"modalities": ["text", "audio"]})
        done = await agent.next("response.audio_transcript.done")
        greeting = await greeting_of(live, agent.session_id)
        record = await live.until_delivery(greeting["id"], "completed", "failed")
        order = upstream_order(live, agent)
        assert index_of(agent, "session.updated") < index_of(agent, "response.created")
        assert len(creates_of(upstream_of(live, agent), GREETING)) == 1
    assert done.transcript == GREETING
    assert order.index("session.update") < order.index("response.create")
    assert record["transcript_verified"] is True
    assert record["greeting_policy"] == "welcome"


async def test_a_greeting_whose_session_updated_was_held_by_a_cut_channel_goes_once_after(
    live: Live,
) -> None:
    """The agent configures its session while its control channel is cut: the service cannot
    know, so it must not greet yet; once the channel is back, it greets once."""
    await greeting_policy(live)
    async with (
        Proxy(live.base_url) as proxy,
        attached_agent(live, service_url=proxy.url, configure=False) as agent,
    ):
        await until_channel(live, agent.session_id, up=True)
        proxy.cut()
        await until_channel(live, agent.session_id, up=False)
        await agent.connection.session.update(session={"modalities": ["text", "audio"]})
        await agent.next("session.updated")
        await asyncio.sleep(0.5)
        assert response_creates(upstream_of(live, agent)) == []
        proxy.restore()
        done = await agent.next("response.audio_transcript.done")
        greeting = await greeting_of(live, agent.session_id)
        record = await live.until_delivery(greeting["id"], "completed", "failed")
        await asyncio.sleep(0.3)  # time for a second greeting to show, if there were one
        assert len(creates_of(upstream_of(live, agent), GREETING)) == 1
        order = upstream_order(live, agent)
    assert done.transcript == GREETING
    assert order.index("session.update") < order.index("response.create")
    assert record["status"] == "completed"
    assert record["transcript_verified"] is True


async def test_a_second_attach_while_the_first_is_live_is_not_greeted_again(live: Live) -> None:
    """The agent replaces its Voice Live connection mid-call and attaches the new one before the
    old one has ended: same conversation, one greeting."""
    await greeting_policy(live)
    async with attached_agent(live, conversation_key="call-7") as first:
        assert (await first.next("response.audio_transcript.done")).transcript == GREETING
        async with attached_agent(live, conversation_key="call-7") as second:
            skipped = await greeting_of(live, second.session_id)
            record = await live.until_delivery(skipped["id"], "skipped", "completed")
            await asyncio.sleep(0.3)
            assert response_creates(upstream_of(live, second)) == []
            assert second.of_type("response.created") == []
    assert record["status"] == "skipped"
    assert "already greeted" in record["failure_reason"]


class TestAGreetingLostWithTheSession:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        # The greeting of an agent that never configures its session goes after
        # max(greeting_audio_hold, 2 s): 2 s here, before the 3 s the session waits for its channel.
        return {"attached_resume_timeout": 3.0, "greeting_audio_hold": 0.5}

    async def test_is_given_on_the_next_attach_of_the_conversation(self, live: Live) -> None:
        """The first session's greeting was prepared but never played (its channel never came
        back): the conversation was not greeted, so the next attach greets it."""
        await greeting_policy(live)
        async with (
            Proxy(live.base_url) as proxy,
            attached_agent(
                live, service_url=proxy.url, conversation_key="call-9", configure=False
            ) as lost,
        ):
            await until_channel(live, lost.session_id, up=True)
            proxy.cut()
            # The agent never configures its session; after 2 s the service greets anyway,
            # which the cut channel holds back, until the session gives up on it.
            greeting = await greeting_of(live, lost.session_id)
            ended = await until_closed(live, lost.session_id, within=6.0)
            unheard = await live.until_delivery(greeting["id"], "expired", "failed", "completed")
            assert response_creates(upstream_of(live, lost)) == []
            proxy.restore()
        assert "control channel" in ended["end_reason"]
        assert unheard["status"] == "expired"
        async with attached_agent(live, conversation_key="call-9") as again:
            done = await again.next("response.audio_transcript.done")
            record = await live.until_delivery(
                (await greeting_of(live, again.session_id))["id"], "completed", "skipped"
            )
        assert done.transcript == GREETING
        assert record["status"] == "completed"
        assert record["transcript_verified"] is True
