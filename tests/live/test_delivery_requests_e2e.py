"""The delivery API as an agent uses it against a live session: idempotent retries, waiting for
the outcome, and the refusals that tell the agent what to fix."""

from __future__ import annotations

import asyncio

import pytest

from service.simulator import SimulatorConfig
from tests.helpers import assert_problem
from tests.live.harness import Live, creates_of, upstream_of

DISCLOSURE = "This call is recorded for quality and training purposes."
GREETING_BACK = "Hello {{name}}, welcome back."


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(speed=20, record_audio=True)


def url(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/deliveries"


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_retried_request_with_the_same_idempotency_key_is_spoken_once(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        headers = {**live.api.as_("agent-1"), "Idempotency-Key": "req-1"}
        body = {"phrase_key": "recording"}
        first = await live.api.http.post(url(agent.session_id), json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        again = await live.api.http.post(url(agent.session_id), json=body, headers=headers)
        assert again.status_code in (200, 201), again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        await live.until_delivery(first.json()["id"], "completed")
        # A retry after it played is still the same delivery, and nothing is spoken again.
        late = await live.api.http.post(url(agent.session_id), json=body, headers=headers)
        assert late.json()["id"] == first.json()["id"]
        assert late.json()["status"] == "completed"
        assert late.headers["Idempotent-Replayed"] == "true"
        await asyncio.sleep(0.2)  # room for a wrongly repeated phrase to reach the upstream
        assert len(creates_of(upstream_of(live, agent), DISCLOSURE)) == 1
        assert len(await live.deliveries(agent.session_id)) == 1


async def test_the_same_idempotency_key_with_another_body_is_refused(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        headers = {**live.api.as_("agent-1"), "Idempotency-Key": "req-2"}
        first = await live.api.http.post(
            url(agent.session_id), json={"phrase_key": "recording"}, headers=headers
        )
        assert first.status_code == 201, first.text
        other = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "recording", "priority": "interrupt"},
            headers=headers,
        )
        assert_problem(other, 422, "idempotency-key-reused")
        await live.until_delivery(first.json()["id"], "completed")
        assert len(creates_of(upstream_of(live, agent), DISCLOSURE)) == 1


async def test_concurrent_requests_with_one_idempotency_key_make_one_delivery(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        headers = {**live.api.as_("agent-1"), "Idempotency-Key": "req-3"}
        answers = await asyncio.gather(
            *(
                live.api.http.post(
                    url(agent.session_id), json={"phrase_key": "recording"}, headers=headers
                )
                for _ in range(5)
            )
        )
        assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
        ids = {a.json()["id"] for a in answers}
        assert len(ids) == 1
        assert sum(1 for a in answers if a.headers.get("Idempotent-Replayed") == "true") == 4
        await live.until_delivery(ids.pop(), "completed")
        await asyncio.sleep(0.2)
        assert len(creates_of(upstream_of(live, agent), DISCLOSURE)) == 1
        assert len(await live.deliveries(agent.session_id)) == 1


# --- wait ----------------------------------------------------------------------------------------


async def test_wait_returns_200_with_the_final_state(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        response = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "recording", "wait": 10},
            headers=live.api.as_("agent-1"),
        )
        assert response.status_code == 200, response.text
        record = response.json()
        done = await agent.next("response.audio_transcript.done")
    assert record["status"] == "completed"
    assert record["transcript_verified"] is True
    assert record["response_id"] == done.response_id
    assert record["played_ms"] > 0
    assert record["ended_at"] is not None


async def test_wait_that_runs_out_returns_201_with_the_state_so_far(live: Live) -> None:
    long = " ".join(["Please listen carefully, as our menu options have recently changed."] * 9)
    await live.approved_phrase("menu", long)
    async with live.agent() as agent:
        response = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "menu", "wait": 0.1},
            headers=live.api.as_("agent-1"),
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] in ("queued", "sent", "started", "speaking")
        await live.until_delivery(response.json()["id"], "completed")


# --- refusals ------------------------------------------------------------------------------------


async def test_a_closed_session_refuses_deliveries(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    async with live.agent() as agent:
        pass
    async with asyncio.timeout(10):
        while True:
            session = (
                await live.api.http.get(
                    f"/v1/sessions/{agent.session_id}", headers=live.api.as_("agent-1")
                )
            ).json()
            if session["state"] == "closed":
                break
            await asyncio.sleep(0.02)
    response = await live.api.http.post(
        url(agent.session_id), json={"phrase_key": "recording"}, headers=live.api.as_("agent-1")
    )
    assert_problem(response, 409, "session-not-live")


async def test_only_the_sessions_own_agent_may_speak_into_it(live: Live) -> None:
    await live.approved_phrase("recording", DISCLOSURE)
    other_key = await live.api.new_key("agent-2", ["agent"])
    async with live.agent() as agent:
        response = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "recording"},
            headers={"Authorization": f"Bearer {other_key}"},
        )
        assert_problem(response, 403)
        editor = await live.api.http.post(
            url(agent.session_id), json={"phrase_key": "recording"}, headers=live.api.as_("alice")
        )
        assert_problem(editor, 403)
        assert upstream_of(live, agent).responses == []
        # An admin may (operations staff speaking into a call on the agent's behalf).
        admin = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "recording", "wait": 10},
            headers=live.api.as_("admin"),
        )
        assert admin.status_code == 200, admin.text
        assert admin.json()["status"] == "completed"
        assert admin.json()["requested_by"] == "admin"


async def test_an_unknown_phrase_is_refused(live: Live) -> None:
    async with live.agent() as agent:
        response = await live.api.http.post(
            url(agent.session_id), json={"phrase_key": "no-such"}, headers=live.api.as_("agent-1")
        )
        assert_problem(response, 404)
        assert await live.deliveries(agent.session_id) == []


async def test_a_phrase_without_an_approved_version_is_refused(live: Live) -> None:
    await live.api.create_phrase("draft-only")
    await live.api.create_version("draft-only", {"en-US": "Not approved yet."})
    async with live.agent() as agent:
        response = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "draft-only"},
            headers=live.api.as_("agent-1"),
        )
        assert_problem(response, 404, "no-version-in-force")
        assert upstream_of(live, agent).responses == []
        assert await live.deliveries(agent.session_id) == []


async def test_missing_variables_are_refused_and_given_ones_are_spoken(live: Live) -> None:
    await live.approved_phrase("welcome-back", GREETING_BACK, variables=[{"name": "name"}])
    async with live.agent() as agent:
        missing = await live.api.http.post(
            url(agent.session_id),
            json={"phrase_key": "welcome-back"},
            headers=live.api.as_("agent-1"),
        )
        assert_problem(missing, 422)
        assert await live.deliveries(agent.session_id) == []
        queued = await live.deliver(
            agent.session_id, "welcome-back", variables={"name": "Ada"}, wait=10
        )
        done = await agent.next("response.audio_transcript.done")
    assert queued["status"] == "completed"
    assert queued["text"] == "Hello Ada, welcome back."
    assert done.transcript == "Hello Ada, welcome back."
    assert queued["transcript_verified"] is True
