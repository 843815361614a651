"""Every role against every endpoint, plus the refusals people would try first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.deliveries.models import Delivery
from service.sessions.models import LiveSession
from tests.access.policy import (
    DELIVERY_ID,
    HOLDER,
    PHRASE_KEY,
    POLICY_NAME,
    ROLES,
    SESSION_ID,
    VERSION_NUMBER,
    Endpoint,
    allowed_roles,
    app_for_collection,
    v1_endpoints,
)
from tests.helpers import Api, assert_problem

ENDPOINTS = v1_endpoints(app_for_collection())

# Required query parameters, so an allowed GET can answer 200 rather than 422.
QUERY: dict[str, dict[str, Any]] = {
    "/v1/phrases/{key}/versions/{number}/diff": {"against": VERSION_NUMBER},
}


async def call(api: Api, endpoint: Endpoint, who: str) -> httpx.Response:
    return await api.http.request(
        endpoint.method,
        endpoint.url,
        params=QUERY.get(endpoint.path),
        json={} if endpoint.sends_body else None,
        headers=api.as_(who),
    )


@pytest.fixture
async def matrix_api(api: Api, app: FastAPI) -> Api:
    """What the matrix addresses exists, so every read answers 200: the phrase with an approved
    version 1, a greeting policy, and an ended session of agent-1 with one delivery."""
    await api.create_phrase(PHRASE_KEY)
    version = await api.approved_version(PHRASE_KEY)
    assert version["number"] == VERSION_NUMBER
    policy = {"name": POLICY_NAME, "mode": "pregenerated", "phrase_key": PHRASE_KEY}
    response = await api.http.post("/v1/greeting-policies", json=policy, headers=api.as_("alice"))
    assert response.status_code == 201, response.text
    now = datetime.now(UTC)
    async with app.state.sessionmaker.begin() as db:
        db.add(
            LiveSession(
                id=SESSION_ID, kind="relay", state="closed", principal="agent-1", started_at=now
            )
        )
        await db.flush()
        db.add(
            Delivery(
                id=DELIVERY_ID,
                session_id=SESSION_ID,
                kind="phrase",
                status="expired",
                priority="append",
                interruptible=True,
                requested_by="agent-1",
                requested_at=now,
            )
        )
    return api


class TestPolicyCoverage:
    def test_every_v1_endpoint_has_an_expected_policy(self) -> None:
        assert ENDPOINTS, "no /v1 routes found: the route listing is broken"
        for endpoint in ENDPOINTS:
            allowed_roles(endpoint)  # raises for an endpoint nobody wrote a policy for

    async def test_matrix_covers_the_routes_of_the_running_app(self, app: FastAPI) -> None:
        assert sorted(map(str, v1_endpoints(app))) == sorted(map(str, ENDPOINTS))


@pytest.mark.parametrize("role", ROLES)
async def test_role_reaches_exactly_the_endpoints_its_policy_allows(
    matrix_api: Api, role: str
) -> None:
    wrong: dict[str, str] = {}
    for endpoint in ENDPOINTS:
        allowed = allowed_roles(endpoint)
        response = await call(matrix_api, endpoint, HOLDER[role])
        try:
            if role in allowed:
                assert response.status_code not in (401, 403)
                assert response.status_code < 500
                if endpoint.method == "GET":
                    assert response.status_code == 200
            else:
                body = assert_problem(response, 403, "forbidden")
                assert body["required_roles"] == sorted(allowed)
                assert HOLDER[role] in body["detail"]
        except (AssertionError, KeyError):
            expected = "allowed" if role in allowed else "403"
            wrong[str(endpoint)] = (
                f"expected {expected}, got {response.status_code}: {response.text}"
            )
    assert wrong == {}


class TestRefusals:
    async def test_editor_cannot_approve(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200

        # carol is an editor but not the author: the refusal is about her role, not four eyes.
        response = await api.transition("recording", 1, "approve", "carol", {"comment": "ok"})

        body = assert_problem(response, 403, "forbidden")
        assert body["required_roles"] == ["approver"]
        version = await api.http.get("/v1/phrases/recording/versions/1", headers=api.as_("bob"))
        assert version.json()["status"] == "in_review"
        assert version.json()["approvals"] == []

    @pytest.mark.parametrize("action", ["reject", "retire"])
    async def test_editor_cannot_reject_or_retire(self, api: Api, action: str) -> None:
        await api.create_phrase()
        await api.approved_version()

        response = await api.transition("recording", 1, action, "carol", {"reason": "no"})

        assert_problem(response, 403, "forbidden")
        version = await api.http.get("/v1/phrases/recording/versions/1", headers=api.as_("bob"))
        assert version.json()["status"] == "approved"

    async def test_approver_cannot_create_a_phrase(self, api: Api) -> None:
        response = await api.http.post(
            "/v1/phrases",
            json={
                "key": "sneaky",
                "title": "Sneaky",
                "category": "other",
                "default_locale": "en-US",
            },
            headers=api.as_("bob"),
        )

        assert_problem(response, 403, "forbidden")
        missing = await api.http.get("/v1/phrases/sneaky", headers=api.as_("bob"))
        assert missing.status_code == 404

    async def test_approver_cannot_draft_a_version(self, api: Api) -> None:
        await api.create_phrase()

        response = await api.http.post(
            "/v1/phrases/recording/versions",
            json={"texts": {"en-US": "Words of my own."}},
            headers=api.as_("dave"),
        )

        assert_problem(response, 403, "forbidden")
        versions = await api.http.get("/v1/phrases/recording/versions", headers=api.as_("dave"))
        assert versions.json()["items"] == []

    async def test_agent_can_resolve_but_cannot_draft(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()

        resolved = await api.http.get("/v1/phrases/recording/resolve", headers=api.as_("agent-1"))
        drafted = await api.http.post(
            "/v1/phrases/recording/versions",
            json={"texts": {"en-US": "Agents write nothing."}},
            headers=api.as_("agent-1"),
        )

        assert resolved.status_code == 200
        assert resolved.json()["text"] == "This call is recorded."
        assert_problem(drafted, 403, "forbidden")

    async def test_admin_cannot_read_the_audit_trail(self, api: Api) -> None:
        for path in ("/v1/audit", "/v1/audit/verify"):
            assert_problem(await api.http.get(path, headers=api.as_("admin")), 403, "forbidden")

    async def test_auditor_cannot_manage_keys(self, api: Api) -> None:
        listed = await api.http.get("/v1/api-keys", headers=api.as_("audrey"))
        created = await api.http.post(
            "/v1/api-keys",
            json={"principal": "audrey", "roles": ["admin"]},
            headers=api.as_("audrey"),
        )

        assert_problem(listed, 403, "forbidden")
        assert_problem(created, 403, "forbidden")
        keys = await api.http.get("/v1/api-keys", headers=api.as_("admin"))
        assert [k["principal"] for k in keys.json()["items"]].count("audrey") == 1

    async def test_agent_cannot_import(self, api: Api) -> None:
        document = {
            "phrases": [
                {"key": "smuggled", "title": "S", "category": "other", "default_locale": "en-US"}
            ]
        }

        response = await api.http.post(
            "/v1/phrases/import", json=document, headers=api.as_("agent-1")
        )

        assert_problem(response, 403, "forbidden")
        missing = await api.http.get("/v1/phrases/smuggled", headers=api.as_("alice"))
        assert missing.status_code == 404

    async def test_refused_request_leaves_no_audit_event(self, api: Api) -> None:
        before = await api.http.get("/v1/audit", headers=api.as_("audrey"))

        refused = await api.http.post(
            "/v1/phrases",
            json={"key": "nope", "title": "N", "category": "other", "default_locale": "en-US"},
            headers=api.as_("agent-1"),
        )

        assert_problem(refused, 403, "forbidden")
        after = await api.http.get("/v1/audit", headers=api.as_("audrey"))
        assert after.json()["items"] == before.json()["items"]
        assert_problem(await api.http.get("/v1/phrases/nope", headers=api.as_("bob")), 404)


class TestCombinedRoles:
    async def test_editor_and_approver_can_approve_someone_elses_draft(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200

        response = await api.transition("recording", 1, "approve", "eve")

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "approved"

    async def test_editor_and_approver_can_draft(self, api: Api) -> None:
        await api.create_phrase()

        response = await api.http.post(
            "/v1/phrases/recording/versions",
            json={"texts": {"en-US": "Drafted by eve."}},
            headers=api.as_("eve"),
        )

        assert response.status_code == 201, response.text
        assert response.json()["author"] == "eve"
