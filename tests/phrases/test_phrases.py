"""Phrases: creating, reading and listing the library."""

from __future__ import annotations

import asyncio
from typing import Any

from service.kit.pagination import encode_cursor
from tests.helpers import Api, assert_problem
from tests.phrases.support import assert_refused, list_keys


async def post_phrase(api: Api, who: str = "alice", **fields: Any) -> Any:
    body = {
        "key": "recording",
        "title": "Call recording disclosure",
        "category": "disclosure",
        "default_locale": "en-US",
        **fields,
    }
    return await api.http.post("/v1/phrases", json=body, headers=api.as_(who))


class TestCreatePhrase:
    async def test_phrase_is_created_with_canonical_locale_and_sorted_tags(self, api: Api) -> None:
        response = await post_phrase(
            api, default_locale="en-gb", tags=["legal", "gdpr", "legal"], description="Said first."
        )
        assert response.status_code == 201, response.text
        assert response.headers["Location"] == "/v1/phrases/recording"
        body = response.json()
        assert body["default_locale"] == "en-GB"
        assert body["tags"] == ["gdpr", "legal"]
        assert body["created_by"] == "alice"
        assert body["cross_language_fallback"] is False
        assert body["latest_version"] is None
        read = await api.http.get("/v1/phrases/recording", headers=api.as_("agent-1"))
        assert read.json() == body

    async def test_duplicate_key_is_409(self, api: Api) -> None:
        await api.create_phrase()
        response = await post_phrase(api, who="carol", title="Another")
        assert_problem(response, 409, "phrase-exists")
        read = await api.http.get("/v1/phrases/recording", headers=api.as_("alice"))
        assert read.json()["title"] == "Call recording disclosure"

    async def test_same_key_created_at_once_is_one_phrase_and_one_409(self, api: Api) -> None:
        responses = await asyncio.gather(
            post_phrase(api, title="First"), post_phrase(api, who="carol", title="Second")
        )
        assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
        loser = next(r for r in responses if r.status_code == 409)
        assert_problem(loser, 409, "phrase-exists")
        assert await list_keys(api) == ["recording"]

    async def test_reserved_or_malformed_key_is_422(self, api: Api) -> None:
        for key in ("export", "import"):
            problem = assert_refused(await post_phrase(api, key=key), 422, "validation-error", key)
            assert "reserved" in problem["detail"]
        for key in ("", "Recording", "call recording", "a--b", "-a", "a/b", "x" * 101):
            assert_refused(await post_phrase(api, key=key), 422, "validation-error", key)
        assert await list_keys(api) == []

    async def test_invalid_fields_are_422(self, api: Api) -> None:
        for fields in (
            {"default_locale": "english-language-x"},
            {"default_locale": "en-GB-x-priv"},
            {"category": "marketing"},
            {"title": ""},
            {"tags": ["Not A Tag"]},
            {"tags": [f"t{i}" for i in range(21)]},
            {"surprise": True},
        ):
            assert_refused(await post_phrase(api, **fields), 422, "validation-error", fields)
        assert await list_keys(api) == []

    async def test_only_editors_create_phrases(self, api: Api) -> None:
        for who in ("bob", "agent-1", "audrey"):
            assert_refused(await post_phrase(api, who=who), 403, "forbidden", who)
        anonymous = await api.http.post("/v1/phrases", json={"key": "recording"})
        assert_problem(anonymous, 401, "unauthenticated")
        assert await list_keys(api) == []


class TestGetPhrase:
    async def test_unknown_phrase_is_404(self, api: Api) -> None:
        response = await api.http.get("/v1/phrases/nope", headers=api.as_("alice"))
        assert_problem(response, 404, "phrase-not-found")

    async def test_latest_version_is_the_highest_number_whatever_its_status(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()
        await api.create_version(texts={"en-US": "Newer."})
        read = await api.http.get("/v1/phrases/recording", headers=api.as_("alice"))
        assert read.json()["latest_version"] == {"number": 2, "status": "draft"}


class TestUpdatePhrase:
    async def test_descriptive_fields_change_and_locale_does_not(self, api: Api) -> None:
        await api.create_phrase(tags=["a", "b"])
        response = await api.http.patch(
            "/v1/phrases/recording",
            json={"title": "New title", "tags": ["b", "c"]},
            headers=api.as_("carol"),
        )
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "New title"
        assert response.json()["tags"] == ["b", "c"]
        refused = await api.http.patch(
            "/v1/phrases/recording", json={"default_locale": "fr-FR"}, headers=api.as_("carol")
        )
        assert_problem(refused, 422, "validation-error")

    async def test_null_leaves_a_field_as_it_is(self, api: Api) -> None:
        await api.create_phrase(tags=["a", "b"], description="Said first.")
        response = await api.http.patch(
            "/v1/phrases/recording",
            json={"title": None, "tags": None, "category": None},
            headers=api.as_("carol"),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["title"], body["tags"], body["category"]) == (
            "Call recording disclosure",
            ["a", "b"],
            "disclosure",
        )
        cleared = await api.http.patch(
            "/v1/phrases/recording", json={"description": None}, headers=api.as_("carol")
        )
        assert cleared.json()["description"] is None


async def library(api: Api) -> None:
    """Five phrases with versions in different states."""
    await api.create_phrase("ai-disclosure", title="AI disclosure", tags=["ai", "legal"])
    await api.approved_version("ai-disclosure", texts={"en-US": "You are talking to an AI."})
    await api.create_phrase("consent", title="Consent request", category="consent", tags=["legal"])
    await api.create_version("consent", texts={"en-US": "May we record this call?"})
    await api.create_phrase("greeting", title="Hello", category="greeting")
    await api.approved_version("greeting", texts={"en-US": "Welcome to Contoso bank."})
    await api.create_phrase("advice", title="Advice disclaimer", category="disclaimer")
    await api.create_phrase("recording", title="Recording 100% disclosure", tags=["legal"])


class TestListPhrases:
    async def test_all_phrases_are_listed_by_key(self, api: Api) -> None:
        await library(api)
        response = await api.http.get("/v1/phrases", headers=api.as_("audrey"))
        body = response.json()
        assert [p["key"] for p in body["items"]] == sorted(
            ["ai-disclosure", "consent", "greeting", "advice", "recording"]
        )
        assert body["next_cursor"] is None
        latest = {p["key"]: p["latest_version"] for p in body["items"]}
        assert latest["consent"] == {"number": 1, "status": "draft"}
        assert latest["advice"] is None

    async def test_filters_by_category_tag_and_version_status(self, api: Api) -> None:
        await library(api)
        assert await list_keys(api, category="disclosure") == ["ai-disclosure", "recording"]
        assert await list_keys(api, category="consent") == ["consent"]
        assert await list_keys(api, category="other") == []
        assert await list_keys(api, tag="legal") == ["ai-disclosure", "consent", "recording"]
        assert await list_keys(api, tag="ai") == ["ai-disclosure"]
        assert await list_keys(api, tag="leg") == []
        assert await list_keys(api, status="approved") == ["ai-disclosure", "greeting"]
        assert await list_keys(api, status="draft") == ["consent"]
        assert await list_keys(api, status="retired") == []
        assert await list_keys(api, tag="legal", status="approved") == ["ai-disclosure"]
        assert await list_keys(api, category="disclosure", q="AI") == ["ai-disclosure"]

    async def test_q_matches_title_and_version_text(self, api: Api) -> None:
        await library(api)
        assert await list_keys(api, q="disclaimer") == ["advice"]  # title
        assert await list_keys(api, q="CONTOSO") == ["greeting"]  # approved text, any case
        assert await list_keys(api, q="record this") == ["consent"]  # draft text
        assert await list_keys(api, q="nothing like this") == []
        # LIKE wildcards in q are literal characters
        assert await list_keys(api, q="100%") == ["recording"]
        assert await list_keys(api, q="%") == ["recording"]
        assert await list_keys(api, q="_") == []

    async def test_cursor_pages_through_every_phrase_exactly_once(self, api: Api) -> None:
        await library(api)
        seen: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            response = await api.http.get("/v1/phrases", params=params, headers=api.as_("alice"))
            assert response.status_code == 200, response.text
            body = response.json()
            assert len(body["items"]) <= 2
            seen += [p["key"] for p in body["items"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert sorted(seen) == sorted(set(seen))
        assert set(seen) == {"ai-disclosure", "consent", "greeting", "advice", "recording"}

    async def test_cursor_keeps_the_filter(self, api: Api) -> None:
        await library(api)
        first = await api.http.get(
            "/v1/phrases", params={"tag": "legal", "limit": 2}, headers=api.as_("alice")
        )
        cursor = first.json()["next_cursor"]
        assert cursor is not None
        second = await api.http.get(
            "/v1/phrases",
            params={"tag": "legal", "limit": 2, "cursor": cursor},
            headers=api.as_("alice"),
        )
        assert [p["key"] for p in second.json()["items"]] == ["recording"]
        assert second.json()["next_cursor"] is None

    async def test_bad_query_parameters_are_422(self, api: Api) -> None:
        await api.create_phrase()
        for cursor in ("garbage!", "eyJhIjoxfQ", encode_cursor(5), "%%%", "x" * 501):
            response = await api.http.get(
                "/v1/phrases", params={"cursor": cursor}, headers=api.as_("alice")
            )
            problem = assert_refused(response, 422, None, cursor)
            assert "cursor" in problem["detail"]
        for params in ({"limit": 0}, {"limit": 501}, {"status": "live"}, {"category": "x"}):
            response = await api.http.get("/v1/phrases", params=params, headers=api.as_("alice"))
            assert_refused(response, 422, "validation-error", params)
