"""Close codes and reasons pass through the relay both ways."""

from __future__ import annotations

import asyncio

import pytest

from service.simulator import SimulatorConfig
from tests.live.harness import EVENT_TIMEOUT, Live, relay_only, upstream_close, upstream_of

pytestmark = relay_only


async def test_the_agents_close_code_and_reason_reach_voice_live(live: Live) -> None:
    async with live.agent() as agent:
        upstream = upstream_of(live, agent)
        await agent.connection.close(code=4000, reason="bye")
        async with asyncio.timeout(EVENT_TIMEOUT):
            await upstream.closed.wait()
        assert upstream_close(upstream) == (4000, "bye")
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            session = (
                await live.api.http.get(
                    f"/v1/sessions/{agent.session_id}", headers=live.api.as_("agent-1")
                )
            ).json()
            if session["state"] == "closed":
                break
            await asyncio.sleep(0.02)
    assert "4000" in session["end_reason"]
    assert "bye" in session["end_reason"]


async def test_a_normal_close_by_the_agent_is_a_normal_close_upstream(live: Live) -> None:
    async with live.agent() as agent:
        upstream = upstream_of(live, agent)
        await agent.connection.close()
        async with asyncio.timeout(EVENT_TIMEOUT):
            await upstream.closed.wait()
        assert upstream_close(upstream)[0] == 1000


class TestUpstreamClose:
    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return SimulatorConfig(speed=20, drop_after_events=3)

    async def test_an_upstream_close_reaches_the_agent_with_its_code_and_reason(
        self, live: Live
    ) -> None:
        async with live.agent() as agent:
            # session.created and session.updated are events 1 and 2; a response's first event
            # is the third, after which the simulator closes with 1011.
            await agent.connection.response.create()
            reader = agent._reader
            assert reader is not None
            async with asyncio.timeout(EVENT_TIMEOUT):
                await asyncio.wait({reader})
            ws = agent.connection._connection
            assert ws.closed
            assert ws.close_code == 1011
            assert agent.of_type("response.created")
