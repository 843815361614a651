"""Writing versions: content rules and optimistic concurrency on drafts."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from service.settings import Settings
from tests.helpers import Api, assert_problem
from tests.phrases.support import (
    assert_refused,
    etag,
    get_version,
    patch,
    patch_current,
    version_url,
)

URL = "/v1/phrases/recording/versions"


async def post_version(api: Api, body: dict[str, Any], who: str = "alice") -> Any:
    return await api.http.post(URL, json=body, headers=api.as_(who))


class TestCreateVersion:
    async def test_draft_is_created_with_number_etag_and_location(self, api: Api) -> None:
        await api.create_phrase()
        response = await post_version(
            api,
            {
                "texts": {"en-US": "Hi {{name}}, this call is recorded."},
                "variables": [{"name": "name", "max_length": 40}],
                "change_note": "first",
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["number"] == 1
        assert body["status"] == "draft"
        assert body["author"] == "alice"
        assert body["editors"] == ["alice"]
        assert body["variables"] == [{"name": "name", "pattern": None, "max_length": 40}]
        assert response.headers["ETag"] == body["etag"]
        assert response.headers["Location"] == version_url("recording", 1)

    async def test_two_spellings_of_one_locale_are_refused_not_merged(self, api: Api) -> None:
        await api.create_phrase()
        response = await post_version(api, {"texts": {"en-US": "First.", "en-us": "Second."}})
        problem = assert_problem(response, 422, "validation-error")
        assert "'en-US'" in problem["detail"]
        listed = await api.http.get(URL, headers=api.as_("alice"))
        assert listed.json()["items"] == []

        version = await api.create_version(texts={"EN-us": "Recorded.", "fr_ca": "Enregistré."})
        assert version["texts"] == {"en-US": "Recorded.", "fr-CA": "Enregistré."}

    async def test_malformed_locale_tag_is_422(self, api: Api) -> None:
        await api.create_phrase()
        for tag in ("englishlanguage", "en--GB", "en-GB-x-private", "", "en_GB_"):
            response = await post_version(api, {"texts": {"en-US": "Recorded.", tag: "x"}})
            assert_refused(response, 422, "validation-error", tag)

    async def test_texts_must_include_the_phrases_default_locale(self, api: Api) -> None:
        await api.create_phrase(default_locale="en-US")
        response = await post_version(api, {"texts": {"en-GB": "This call is recorded."}})
        problem = assert_problem(response, 422, "invalid-version-content")
        assert "'en-US'" in problem["detail"]
        assert_problem(await post_version(api, {"texts": {}}), 422, "validation-error")

    async def test_empty_text_is_422(self, api: Api) -> None:
        await api.create_phrase()
        for text in ("", "   ", "\n\t"):
            response = await post_version(api, {"texts": {"en-US": "Recorded.", "fr-FR": text}})
            problem = assert_refused(response, 422, "invalid-version-content", text)
            assert "texts.fr-FR: the text is empty" in problem["problems"]

    async def test_text_longer_than_max_text_chars_is_422(
        self, api: Api, settings: Settings
    ) -> None:
        await api.create_phrase()
        limit = settings.max_text_chars
        ok = await post_version(api, {"texts": {"en-US": "é" * limit}})
        assert ok.status_code == 201, ok.text
        response = await post_version(api, {"texts": {"en-US": "a" * (limit + 1)}})
        problem = assert_problem(response, 422, "invalid-version-content")
        assert f"longer than {limit} characters" in problem["detail"]

    async def test_effective_until_must_be_after_effective_from(self, api: Api) -> None:
        await api.create_phrase()
        for until in ("2030-01-01T00:00:00Z", "2029-12-31T23:59:59Z", "2030-01-01T01:00:00+01:00"):
            body = {
                "texts": {"en-US": "Recorded."},
                "effective_from": "2030-01-01T00:00:00Z",
                "effective_until": until,
            }
            problem = assert_refused(await post_version(api, body), 422, "validation-error", until)
            assert "effective_until must be after effective_from" in problem["detail"]

    async def test_placeholder_problems_are_422_with_each_problem_listed(self, api: Api) -> None:
        await api.create_phrase()
        body = {
            "texts": {"en-US": "Hi {{name}}, account {{acct}}.", "fr-FR": "Salut {{name"},
            "variables": [{"name": "name"}, {"name": "code", "pattern": "(["}],
        }
        problem = assert_problem(await post_version(api, body), 422, "invalid-version-content")
        assert "texts.en-US: placeholder {{acct}} is not declared" in problem["problems"]
        assert "texts.fr-FR: malformed placeholder (use {{name}})" in problem["problems"]
        assert any(p.startswith("variables.code.pattern:") for p in problem["problems"])

        body = {"texts": {"en-US": "Hi {{name}}"}, "variables": [{"name": "name"}] * 2}
        problem = assert_problem(await post_version(api, body), 422, "invalid-version-content")
        assert "variables: a name is declared twice" in problem["problems"]

    async def test_only_editors_write_versions_of_known_phrases(self, api: Api) -> None:
        await api.create_phrase()
        for who in ("bob", "agent-1", "audrey"):
            response = await post_version(api, {"texts": {"en-US": "x"}}, who)
            assert_refused(response, 403, "forbidden", who)
        response = await api.http.post(
            "/v1/phrases/nope/versions", json={"texts": {"en-US": "x"}}, headers=api.as_("alice")
        )
        assert_problem(response, 404, "phrase-not-found")


class TestGetVersion:
    async def test_version_is_read_with_its_etag_and_hashes(self, api: Api) -> None:
        await api.create_phrase()
        created = await api.create_version(
            texts={"en-US": "Recorded.", "de-DE": "Schön aufgezeichnet."}
        )
        response = await get_version(api, "recording", 1, who="agent-1")
        assert response.headers["ETag"] == created["etag"] == response.json()["etag"]
        assert response.json()["texts"] == created["texts"]
        assert response.json()["sha256"] == {
            "en-US": hashlib.sha256(b"Recorded.").hexdigest(),
            "de-DE": hashlib.sha256("Schön aufgezeichnet.".encode()).hexdigest(),
        }

    async def test_versions_of_a_phrase_are_listed_in_order(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()
        await api.create_version(texts={"en-US": "Second."})
        response = await api.http.get(URL, headers=api.as_("agent-1"))
        items = response.json()["items"]
        assert [(v["number"], v["status"]) for v in items] == [(1, "approved"), (2, "draft")]
        response = await api.http.get(version_url("recording", 3), headers=api.as_("alice"))
        assert_problem(response, 404, "version-not-found")


class TestUpdateVersion:
    async def test_patch_without_if_match_is_428(self, api: Api) -> None:
        await api.create_phrase()
        created = await api.create_version()
        problem = assert_problem(
            await patch(api, "recording", 1, {"change_note": "x"}), 428, "precondition-required"
        )
        assert problem["etag"] == await etag(api, "recording", 1)
        not_editor = await patch(
            api, "recording", 1, {"change_note": "x"}, who="bob", if_match=created["etag"]
        )
        assert_problem(not_editor, 403, "forbidden")
        assert (await get_version(api, "recording", 1)).json()["change_note"] is None

    async def test_patch_with_stale_etag_is_412_and_changes_nothing(self, api: Api) -> None:
        await api.create_phrase()
        first = await api.create_version()
        updated = await patch_current(api, "recording", 1, {"change_note": "carol's"}, who="carol")
        assert updated.status_code == 200, updated.text

        stale = await patch(
            api, "recording", 1, {"texts": {"en-US": "Mine."}}, if_match=first["etag"]
        )
        problem = assert_problem(stale, 412, "precondition-failed")
        assert problem["current_etag"] == updated.headers["ETag"]
        submit = await api.http.post(
            f"{version_url('recording', 1)}/submit",
            headers={**api.as_("alice"), "If-Match": first["etag"]},
        )
        assert_problem(submit, 412, "precondition-failed")
        after = (await get_version(api, "recording", 1)).json()
        assert after["texts"] == {"en-US": "This call is recorded."}
        assert after["change_note"] == "carol's"
        assert after["status"] == "draft"

    async def test_patch_with_current_etag_applies_and_gives_a_new_etag(self, api: Api) -> None:
        await api.create_phrase()
        created = await api.create_version(texts={"en-US": "Recorded.", "fr-FR": "Enregistré."})
        response = await patch(
            api,
            "recording",
            1,
            {
                "texts": {"en-US": "Hi {{name}}, recorded.", "de-DE": "Hallo {{name}}."},
                "variables": [{"name": "name"}],
            },
            who="carol",
            if_match=created["etag"],
        )
        assert response.status_code == 200, response.text
        new_etag = response.headers["ETag"]
        assert new_etag != created["etag"]
        assert new_etag == response.json()["etag"]

        read = await get_version(api, "recording", 1)
        assert read.headers["ETag"] == new_etag
        body = read.json()
        # texts replace the whole set: fr-FR is gone, de-DE is new
        assert body["texts"] == {"de-DE": "Hallo {{name}}.", "en-US": "Hi {{name}}, recorded."}
        assert body["editors"] == ["alice", "carol"]
        assert body["author"] == "alice"
        assert body["status"] == "draft"

    async def test_etag_changes_on_every_write(self, api: Api) -> None:
        await api.create_phrase()
        seen = {(await api.create_version())["etag"]}
        for note in ("one", "two", "two"):
            response = await patch_current(api, "recording", 1, {"change_note": note})
            assert response.status_code == 200, response.text
            seen.add(response.headers["ETag"])
        assert len(seen) == 4
        submitted = await api.transition("recording", 1, "submit", "alice")
        assert submitted.headers["ETag"] not in seen

    async def test_patch_changes_only_the_fields_sent(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version(
            texts={"en-US": "Hi {{name}}"},
            variables=[{"name": "name"}],
            effective_from="2030-01-01T00:00:00Z",
            effective_until="2031-01-01T00:00:00Z",
        )
        response = await patch_current(api, "recording", 1, {"change_note": "only this"})
        body = response.json()
        assert body["change_note"] == "only this"
        assert body["texts"] == {"en-US": "Hi {{name}}"}
        assert [v["name"] for v in body["variables"]] == ["name"]
        assert body["effective_from"].startswith("2030-01-01")

        # an explicit null clears a field; "*" matches whatever the current ETag is
        response = await patch(api, "recording", 1, {"effective_from": None}, if_match="*")
        assert response.status_code == 200, response.text
        assert response.json()["effective_from"] is None
        assert response.json()["effective_until"].startswith("2031-01-01")
        assert response.json()["change_note"] == "only this"

    async def test_patch_breaking_a_content_rule_is_422_and_changes_nothing(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version(effective_from="2030-01-01T00:00:00Z")
        before = await get_version(api, "recording", 1)
        for body, slug in (
            ({"texts": {"en-GB": "Recorded."}}, "invalid-version-content"),
            ({"texts": {"en-US": "Hi {{name}}"}}, "invalid-version-content"),
            ({"variables": [{"name": "name"}]}, "invalid-version-content"),
            ({"effective_until": "2029-06-01T00:00:00Z"}, "invalid-version-content"),
            ({"texts": {"en-US": ""}}, "invalid-version-content"),
            ({"texts": {"xx-yyyyyyyyy": "x"}}, "validation-error"),
        ):
            response = await patch(api, "recording", 1, body, if_match=before.headers["ETag"])
            assert_refused(response, 422, slug, body)
        after = await get_version(api, "recording", 1)
        assert after.json() == before.json()

    async def test_of_two_writers_holding_the_same_etag_only_one_wins(self, api: Api) -> None:
        await api.create_phrase()
        created = await api.create_version()
        responses = await asyncio.gather(
            patch(api, "recording", 1, {"texts": {"en-US": "Alice's."}}, if_match=created["etag"]),
            patch(
                api,
                "recording",
                1,
                {"texts": {"en-US": "Carol's."}},
                who="carol",
                if_match=created["etag"],
            ),
        )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 412], [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200).json()
        assert winner["etag"] != created["etag"]  # a texts-only change is a new revision too
        assert (await get_version(api, "recording", 1)).json()["texts"] == winner["texts"]

    async def test_drafts_written_at_once_get_distinct_numbers(self, api: Api) -> None:
        await api.create_phrase()
        responses = await asyncio.gather(
            *(post_version(api, {"texts": {"en-US": f"Draft {i}."}}) for i in range(4))
        )
        assert [r.status_code for r in responses] == [201] * 4, [r.text for r in responses]
        assert sorted(r.json()["number"] for r in responses) == [1, 2, 3, 4]
