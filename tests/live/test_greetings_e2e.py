"""Greetings through the relay: a session opens with the approved greeting, spoken before the
caller's audio reaches Voice Live, once per conversation."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.simulator import SimulatorConfig
from service.simulator.config import DEFAULT_GENERATED_REPLY
from tests.helpers import PROBLEM_JSON
from tests.live.harness import (
    EVENT_TIMEOUT,
    Agent,
    Arrivals,
    Live,
    agent_with,
    create_greeting_policy,
    creates_of,
    pcm16_silence,
    quiet_session,
    relay_only,
    response_creates,
    send_audio,
    until,
    upstream_of,
    ws_url,
)

GREETING = "Hello, you are speaking with Contoso. This call may be recorded."
OTHER = "Welcome back to Contoso support."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=20, record_audio=True)


async def greeting_policy(live: Live, name: str = "welcome", text: str = GREETING) -> None:
    await live.approved_phrase(name, text, category="greeting")
    await create_greeting_policy(live, name, name)


async def greetings_of(live: Live, session_id: str) -> list[dict[str, object]]:
    return [d for d in await live.deliveries(session_id) if d["kind"] == "greeting"]


async def greeting_of(live: Live, session_id: str) -> dict[str, object]:
    """The session's greeting record (written just after session.updated: wait for it)."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            found = await greetings_of(live, session_id)
            if found:
                [greeting] = found
                return greeting
            await asyncio.sleep(0.02)


@relay_only
async def test_the_default_greeting_is_spoken_first_before_any_caller_audio(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrivals = Arrivals().install(monkeypatch)
    await greeting_policy(live)
    async with live.agent(session=quiet_session()) as agent:
        # The agent starts its microphone right after session.updated, as the how-to says.
        sent = await send_audio(agent, pcm16_silence(200))
        done = await agent.next("response.audio_transcript.done")
        assert done.transcript == GREETING
        upstream = upstream_of(live, agent)
        order = arrivals.of(agent)
        # Voice Live got: session.update, then the greeting, and only then the caller's audio.
        assert order[0] == "session.update"
        assert order[1] == "response.create", order[:5]
        assert order.index("response.create") < order.index("input_audio_buffer.append")
        assert len(creates_of(upstream, GREETING)) == 1
        greeting = await greeting_of(live, agent.session_id)
        record = await live.until_delivery(str(greeting["id"]), "completed")
        # None of the caller's audio was lost while it was held back.
        assert bytes(upstream.received_audio) == b"".join(sent)
    assert record["kind"] == "greeting"
    assert record["greeting_policy"] == "welcome"
    assert record["text"] == GREETING
    assert record["transcript_verified"] is True
    assert record["response_id"] == done.response_id


async def test_greeting_none_on_connect_sends_no_greeting(live: Live) -> None:
    await greeting_policy(live)
    await live.approved_phrase("recording", "This call is recorded.")
    async with live.agent(greeting="none") as agent:
        # A delivery goes through at once: nothing was held for a greeting.
        queued = await live.deliver(agent.session_id, "recording")
        await live.until_delivery(queued["id"], "completed")
        upstream = upstream_of(live, agent)
        assert creates_of(upstream, GREETING) == []
        assert len(response_creates(upstream)) == 1
        assert await greetings_of(live, agent.session_id) == []
    session = (
        await live.api.http.get(f"/v1/sessions/{agent.session_id}", headers=live.api.as_("agent-1"))
    ).json()
    assert session["greeting_policy"] is None


async def test_a_named_greeting_policy_is_used_instead_of_the_default(live: Live) -> None:
    await greeting_policy(live)
    await live.approved_phrase("returning", OTHER, category="greeting")
    await create_greeting_policy(live, "returning", "returning", is_default=False)
    async with live.agent(greeting="returning") as agent:
        done = await agent.next("response.audio_transcript.done")
        assert done.transcript == OTHER
        upstream = upstream_of(live, agent)
        assert creates_of(upstream, GREETING) == []


@relay_only
async def test_an_unknown_greeting_is_refused_before_the_websocket_opens(live: Live) -> None:
    with pytest.raises(VoiceLiveConnectionError):
        async with live.agent(greeting="no-such-policy"):
            pass
    assert live.simulator.sessions == []


@relay_only
async def test_an_unknown_greeting_answers_404_problem_json(live: Live) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                ws_url(live, greeting="no-such-policy"),
                headers={"api-key": live.api.keys["agent-1"]},
            )
        assert refused.value.status == 404
        assert refused.value.headers is not None
        assert refused.value.headers["content-type"].startswith(PROBLEM_JSON)
        # The body: fetch the same refusal as a plain GET with upgrade headers.
        response = await http.get(
            ws_url(live, greeting="no-such-policy").replace("ws://", "http://", 1),
            headers={
                "api-key": live.api.keys["agent-1"],
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert response.status == 404
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        body = await response.json(content_type=None)
        assert body["status"] == 404
        assert "no-such-policy" in body["detail"]
    assert live.simulator.sessions == []  # Voice Live was never called
    sessions = await live.api.http.get("/v1/sessions", headers=live.api.as_("agent-1"))
    assert sessions.json()["items"] == []


@pytest.mark.parametrize("how", ["query", "header"])
async def test_a_reconnect_with_the_same_conversation_key_is_not_greeted_again(
    live: Live, how: str
) -> None:
    await greeting_policy(live)
    ck = {"conversation-key": "call-42"} if how == "query" else {}
    headers = {"x-conversation-key": "call-42"} if how == "header" else {}
    async with agent_with(live, headers=headers, query=ck) as first:
        done = await first.next("response.audio_transcript.done")
        assert done.transcript == GREETING
        greeted = await greeting_of(live, first.session_id)
        await live.until_delivery(str(greeted["id"]), "completed")
    async with agent_with(live, headers=headers, query=ck) as second:
        skipped = await greeting_of(live, second.session_id)
        record = await live.until_delivery(str(skipped["id"]), "skipped")
        assert "already greeted" in (record["failure_reason"] or "")
        # Nothing is spoken: a delivery of ours is the first response of this connection.
        await live.approved_phrase("recording", "This call is recorded.")
        queued = await live.deliver(second.session_id, "recording")
        await live.until_delivery(queued["id"], "completed")
        upstream = upstream_of(live, second)
        assert creates_of(upstream, GREETING) == []
        assert len(response_creates(upstream)) == 1
        assert [e.transcript for e in second.of_type("response.audio_transcript.done")] == [
            "This call is recorded."
        ]
    session = (
        await live.api.http.get(
            f"/v1/sessions/{second.session_id}", headers=live.api.as_("agent-1")
        )
    ).json()
    assert session["conversation_key"] == "call-42"


async def test_another_conversation_key_gets_its_own_greeting(live: Live) -> None:
    await greeting_policy(live)
    async with agent_with(live, query={"conversation-key": "call-1"}) as first:
        assert (await first.next("response.audio_transcript.done")).transcript == GREETING
    async with agent_with(live, query={"conversation-key": "call-2"}) as second:
        assert (await second.next("response.audio_transcript.done")).transcript == GREETING
        greeting = await greeting_of(live, second.session_id)
        record = await live.until_delivery(str(greeting["id"]), "completed")
        assert record["transcript_verified"] is True
        assert len(creates_of(upstream_of(live, second), GREETING)) == 1


@relay_only
async def test_audio_before_the_session_update_does_not_hold_the_update_back(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent that starts its microphone before configuring the session: its audio waits for
    the greeting, but its session.update (which the greeting itself waits for) goes through at
    once, and the held audio follows in order, none of it lost."""
    arrivals = Arrivals().install(monkeypatch)
    await greeting_policy(live)
    loop = asyncio.get_running_loop()
    async with connect(
        endpoint=live.base_url,
        credential=AzureKeyCredential(live.api.keys["agent-1"]),
        model="gpt-realtime",
    ) as connection:
        agent = Agent(connection)
        agent.start()
        try:
            created = await agent.next("session.created")
            agent.voicelive_id = created.session.id
            started = loop.time()
            sent = await send_audio(agent, pcm16_silence(200))
            await connection.session.update(session=quiet_session())
            await agent.next("session.updated")
            done = await agent.next("response.audio_transcript.done")
            greeted_after = loop.time() - started
            upstream = upstream_of(live, agent)
            await until(lambda: len(upstream.received_audio) == len(b"".join(sent)))
            order = arrivals.of(agent)
        finally:
            await agent.stop()
    assert done.transcript == GREETING
    # Neither the audio hold (5 s) nor the 2 s wait for a missing session.update ran out.
    assert greeted_after < 1.5
    assert order.index("session.update") < order.index("response.create")
    assert order.index("response.create") < order.index("input_audio_buffer.append")
    assert bytes(upstream.received_audio) == b"".join(sent)


async def test_a_generated_greeting_asks_the_model_and_records_what_it_said(live: Live) -> None:
    instructions = "Greet the caller warmly in English and offer help."
    response = await live.api.http.post(
        "/v1/greeting-policies",
        json={
            "name": "warm",
            "mode": "generated",
            "instructions": instructions,
            "is_default": True,
        },
        headers=live.api.as_("alice"),
    )
    assert response.status_code == 201, response.text
    async with live.agent(session=quiet_session()) as agent:
        done = await agent.next("response.audio_transcript.done")
        greeting = await greeting_of(live, agent.session_id)
        record = await live.until_delivery(str(greeting["id"]), "completed")
        [create] = response_creates(upstream_of(live, agent))
    assert create["response"]["instructions"] == instructions
    assert "pre_generated_assistant_message" not in create["response"]
    assert done.transcript == DEFAULT_GENERATED_REPLY
    assert record["text"] is None
    assert record["instructions"] == instructions
    assert record["transcript"] == DEFAULT_GENERATED_REPLY
    assert record["transcript_verified"] is None  # nothing approved to compare it with


@relay_only
class TestAnAgentThatNeverConfiguresItsSession:
    @pytest.fixture
    def live_settings(self) -> dict[str, object]:
        return {"greeting_audio_hold": 0.5}

    async def test_it_is_greeted_on_the_defaults_after_two_seconds(self, live: Live) -> None:
        await greeting_policy(live)
        loop = asyncio.get_running_loop()
        async with connect(
            endpoint=live.base_url,
            credential=AzureKeyCredential(live.api.keys["agent-1"]),
            model="gpt-realtime",
        ) as connection:
            agent = Agent(connection)
            agent.start()
            try:
                await agent.next("session.created")
                connected = loop.time()
                done = await agent.next("response.audio_transcript.done")
                waited = loop.time() - connected
            finally:
                await agent.stop()
        assert done.transcript == GREETING
        assert agent.of_type("session.updated") == []  # it never configured the session
        assert 2.0 <= waited < 4.0  # not held for good: at least 2 s, then on the defaults

    async def test_held_caller_audio_is_let_through_when_the_hold_runs_out(
        self, live: Live, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        arrivals = Arrivals().install(monkeypatch)
        await greeting_policy(live)
        async with connect(
            endpoint=live.base_url,
            credential=AzureKeyCredential(live.api.keys["agent-1"]),
            model="gpt-realtime",
        ) as connection:
            agent = Agent(connection)
            agent.start()
            try:
                created = await agent.next("session.created")
                agent.voicelive_id = created.session.id
                sent = await send_audio(agent, pcm16_silence(100))
                upstream = upstream_of(live, agent)
                # The 0.5 s hold ends long before the greeting (2 s without session.updated).
                await until(lambda: len(upstream.received_audio) == len(b"".join(sent)), within=1.5)
                await agent.next("response.audio_transcript.done")
                order = arrivals.of(agent)
            finally:
                await agent.stop()
        assert order.index("input_audio_buffer.append") < order.index("response.create")
        assert bytes(upstream.received_audio) == b"".join(sent)
