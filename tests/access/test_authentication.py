"""Who is calling: keys in headers, missing, unknown and revoked keys, and the few public routes."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.access.policy import PUBLIC_PATHS, Endpoint, http_endpoints
from tests.helpers import Api, assert_problem


async def send(
    http: httpx.AsyncClient, endpoint: Endpoint, headers: dict[str, str]
) -> httpx.Response:
    return await http.request(
        endpoint.method,
        endpoint.url,
        json={} if endpoint.sends_body else None,
        headers=headers,
    )


def assert_unauthenticated(response: httpx.Response) -> None:
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer"), response.headers


async def refusals(api: Api, app: FastAPI, headers: dict[str, str]) -> dict[str, str]:
    """Each non-public endpoint that did not answer 401 with a challenge, and what it said."""
    wrong: dict[str, str] = {}
    for endpoint in http_endpoints(app):
        if endpoint.path in PUBLIC_PATHS:
            continue
        response = await send(api.http, endpoint, headers)
        try:
            assert_unauthenticated(response)
        except (AssertionError, KeyError):
            wrong[str(endpoint)] = f"{response.status_code} {response.text[:200]}"
    return wrong


class TestPublicRoutes:
    async def test_only_probes_and_the_api_description_answer_without_a_key(
        self, api: Api, app: FastAPI
    ) -> None:
        public: set[str] = set()
        for endpoint in http_endpoints(app):
            response = await send(api.http, endpoint, {})
            if response.status_code != 401:
                public.add(endpoint.path)
                assert response.status_code == 200, (str(endpoint), response.text)
        assert public == PUBLIC_PATHS

    async def test_every_other_route_needs_a_key(self, api: Api, app: FastAPI) -> None:
        assert await refusals(api, app, {}) == {}


class TestRefusedKeys:
    async def test_unknown_key_is_refused_everywhere(self, api: Api, app: FastAPI) -> None:
        headers = {"Authorization": "Bearer cms_not-a-key-this-service-issued"}
        assert await refusals(api, app, headers) == {}

    async def test_revoked_key_is_refused_everywhere(self, api: Api, app: FastAPI) -> None:
        keys = (await api.http.get("/v1/api-keys", headers=api.as_("admin"))).json()["items"]
        eve = next(k for k in keys if k["principal"] == "eve")
        revoked = await api.http.delete(f"/v1/api-keys/{eve['id']}", headers=api.as_("admin"))
        assert revoked.status_code == 200, revoked.text

        assert await refusals(api, app, api.as_("eve")) == {}
        assert await refusals(api, app, {"api-key": api.keys["eve"]}) == {}

    async def test_revoking_one_key_leaves_the_others_working(self, api: Api) -> None:
        keys = (await api.http.get("/v1/api-keys", headers=api.as_("admin"))).json()["items"]
        alice = next(k for k in keys if k["principal"] == "alice")
        await api.http.delete(f"/v1/api-keys/{alice['id']}", headers=api.as_("admin"))

        assert (await api.http.get("/v1/phrases", headers=api.as_("carol"))).status_code == 200
        assert_unauthenticated(await api.http.get("/v1/phrases", headers=api.as_("alice")))

    async def test_key_that_differs_in_one_character_is_refused(self, api: Api) -> None:
        key = api.keys["alice"]
        altered = key[:-1] + ("A" if key[-1] != "A" else "B")

        response = await api.http.get("/v1/phrases", headers={"Authorization": f"Bearer {altered}"})

        assert_unauthenticated(response)

    async def test_missing_key_says_how_to_send_one(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/v1/phrases"), 401, "unauthenticated")
        assert "Authorization: Bearer" in body["detail"]
        assert "api-key" in body["detail"]


class TestKeyHeaders:
    async def test_bearer_authorization_header_authenticates(self, api: Api) -> None:
        response = await api.http.get(
            "/v1/phrases", headers={"Authorization": f"Bearer {api.keys['agent-1']}"}
        )
        assert response.status_code == 200, response.text

    async def test_api_key_header_authenticates(self, api: Api) -> None:
        response = await api.http.get("/v1/phrases", headers={"api-key": api.keys["agent-1"]})
        assert response.status_code == 200, response.text

    async def test_api_key_header_acts_as_the_keys_principal(self, api: Api) -> None:
        response = await api.http.post(
            "/v1/phrases",
            json={"key": "by-header", "title": "T", "category": "other", "default_locale": "en"},
            headers={"api-key": api.keys["carol"]},
        )
        assert response.status_code == 201, response.text
        assert response.json()["created_by"] == "carol"

    async def test_bearer_scheme_is_case_insensitive(self, api: Api) -> None:
        response = await api.http.get(
            "/v1/phrases", headers={"Authorization": f"bearer {api.keys['agent-1']}"}
        )
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        "authorization",
        ["Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Token {key}", "{key}"],
        ids=["empty-bearer", "blank-bearer", "basic", "other-scheme", "no-scheme"],
    )
    async def test_malformed_authorization_header_is_401(
        self, api: Api, authorization: str
    ) -> None:
        headers = {"Authorization": authorization.format(key=api.keys["alice"])}
        assert_unauthenticated(await api.http.get("/v1/phrases", headers=headers))

    async def test_key_in_the_query_string_is_not_accepted_over_http(self, api: Api) -> None:
        # Only the WebSocket relay takes a key in the URL (browsers cannot set headers there);
        # plain HTTP must not, or keys end up in access logs.
        for name in ("api-key", "api_key", "key"):
            response = await api.http.get("/v1/phrases", params={name: api.keys["alice"]})
            assert_unauthenticated(response)

    async def test_request_without_key_is_refused_before_its_body_is_validated(
        self, client: httpx.AsyncClient
    ) -> None:
        # An anonymous caller learns nothing about what the endpoint expects.
        response = await client.post("/v1/phrases", json={"key": 5, "category": "nonsense"})
        assert_unauthenticated(response)
