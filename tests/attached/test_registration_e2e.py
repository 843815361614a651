"""Attaching, refused: ``attach`` raises ``AttachError`` saying why and registers nothing, and the
control WebSocket refuses the wrong caller or session before it opens, with problem+json."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import AttachError, attach
from tests.attached.support import attached_agent, control_ws_url, until_closed
from tests.helpers import PROBLEM_JSON
from tests.live.harness import EVENT_TIMEOUT, Live, create_greeting_policy

TEXT = "This call is recorded."


async def sessions_listed(live: Live) -> list[dict[str, Any]]:
    response = await live.api.http.get("/v1/sessions", headers=live.api.as_("admin"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def attach_with(live: Live, api_key: str, **fields: Any) -> None:
    """Attach an open SDK connection and, if that worked, check it is still usable."""
    async with connect(
        endpoint=live.simulator.endpoint,
        credential=AzureKeyCredential("upstream-key"),
        model="gpt-realtime",
    ) as connection:
        try:
            async with attach(connection, service_url=live.base_url, api_key=api_key, **fields):
                pytest.fail("attach should have been refused")
        finally:
            # The agent's own connection is left as it was: it still talks to Voice Live.
            created = await connection.recv()
            assert created.type == "session.created"
            await connection.session.update(session={"modalities": ["text", "audio"]})
            updated = await connection.recv()
            assert updated.type == "session.updated"


async def test_an_unknown_greeting_policy_is_refused_and_nothing_is_registered(
    live: Live,
) -> None:
    await live.approved_phrase("welcome", "Hello.", category="greeting")
    await create_greeting_policy(live, "welcome", "welcome")
    with pytest.raises(AttachError) as refused:
        await attach_with(live, live.api.keys["agent-1"], greeting="no-such-policy")
    message = str(refused.value)
    assert "404" in message
    assert "no-such-policy" in message
    assert await sessions_listed(live) == []


@pytest.mark.parametrize(("who", "status"), [("unknown", 401), ("alice", 403), ("audrey", 403)])
async def test_a_key_that_may_not_attach_is_refused(live: Live, who: str, status: int) -> None:
    key = "not-a-key-of-this-service-0123" if who == "unknown" else live.api.keys[who]
    with pytest.raises(AttachError) as refused:
        await attach_with(live, key, conversation_key="call-1")
    assert f"({status})" in str(refused.value)
    assert await sessions_listed(live) == []


async def test_a_service_that_cannot_be_reached_is_an_attach_error(live: Live) -> None:
    async with connect(
        endpoint=live.simulator.endpoint,
        credential=AzureKeyCredential("upstream-key"),
        model="gpt-realtime",
    ) as connection:
        # Port 9 (discard): nothing listens there on a test machine.
        with pytest.raises(AttachError) as refused:
            async with attach(connection, service_url="http://127.0.0.1:9", api_key="x" * 20):
                pytest.fail("attach should have failed")
    assert "could not be reached" in str(refused.value)


# --- the control WebSocket refuses before it opens ----------------------------------------------


async def refusal(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """The status the WebSocket handshake is refused with, and the problem+json it carries."""
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(10))
        status = refused.value.status
        assert refused.value.headers is not None
        assert refused.value.headers["content-type"].startswith(PROBLEM_JSON)
        # The body: the same refusal fetched as a plain GET with the upgrade headers.
        response = await http.get(
            url.replace("ws://", "http://", 1),
            headers={
                **headers,
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert response.status == status
        body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    return status, body


async def test_the_control_websocket_refuses_the_wrong_caller_and_the_session_lives_on(
    live: Live,
) -> None:
    await live.approved_phrase("recording", TEXT)
    other_agent = await live.api.new_key("agent-2", ["agent"])
    async with attached_agent(live) as agent:
        url = control_ws_url(live, agent.session_id)
        no_key = await refusal(url, {})
        wrong_key = await refusal(url, {"api-key": "not-a-key-of-this-service-0123"})
        someone_elses = await refusal(url, {"api-key": other_agent})
        not_an_agent = await refusal(url, {"api-key": live.api.keys["alice"]})
        unknown = await refusal(
            control_ws_url(live, "ses_does_not_exist"), {"api-key": live.api.keys["agent-1"]}
        )
        # None of that disturbed the session or its real channel: a delivery still plays.
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], "completed", "failed", "expired")
        done = await agent.next("response.audio_transcript.done", within=EVENT_TIMEOUT)
    assert no_key[0] == 401
    assert wrong_key[0] == 401
    assert someone_elses[0] == 403
    assert "agent-1" in someone_elses[1]["detail"]
    assert not_an_agent[0] == 403
    assert unknown[0] == 404
    assert record["status"] == "completed"
    assert done.transcript == TEXT


async def test_the_control_websocket_of_an_ended_session_answers_409(live: Live) -> None:
    async with attached_agent(live) as agent:
        pass
    ended = await until_closed(live, agent.session_id)
    status, body = await refusal(
        control_ws_url(live, agent.session_id), {"api-key": live.api.keys["agent-1"]}
    )
    assert status == 409
    assert body["type"] == "/problems/session-not-live"
    assert ended["end_reason"] in body["detail"]


async def test_a_relayed_session_has_no_control_websocket(live: Live) -> None:
    async with connect(
        endpoint=live.base_url,
        credential=AzureKeyCredential(live.api.keys["agent-1"]),
        model="gpt-realtime",
    ) as connection:
        assert (await connection.recv()).type == "session.created"
        [relayed] = await sessions_listed(live)
        assert relayed["kind"] == "relay"
        status, body = await refusal(
            control_ws_url(live, relayed["id"]), {"api-key": live.api.keys["agent-1"]}
        )
        # The relayed session is unharmed by the attempt.
        await connection.session.update(session={"modalities": ["text", "audio"]})
        assert (await connection.recv()).type == "session.updated"
    assert status == 409
    assert body["type"] == "/problems/session-elsewhere"
    assert "relayed" in body["detail"]
