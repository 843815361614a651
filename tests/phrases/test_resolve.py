"""Resolution: which approved text a caller hears, for a locale, at an instant."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.helpers import Api, assert_problem
from tests.phrases.support import (
    assert_refused,
    days,
    iso,
    now,
    resolve,
    submitted_version,
    when,
)


async def resolved(api: Api, key: str = "recording", **params: Any) -> dict[str, Any]:
    response = await resolve(api, key, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class TestResolveFields:
    async def test_resolution_carries_text_hash_and_window(self, api: Api) -> None:
        await api.create_phrase()
        text = "Hi {{name}}, this call is recorded. Ünïcödé ✓"
        version = await api.approved_version(
            texts={"en-US": text},
            variables=[{"name": "name", "pattern": "[A-Za-z ]+", "max_length": 30}],
        )
        body = await resolved(api, locale="en-US")
        assert body == {
            "phrase_key": "recording",
            "version": version["number"],
            "locale": "en-US",
            "requested_locale": "en-US",
            "fallback": False,
            "fallback_kind": "exact",
            "text": text,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "variables": [{"name": "name", "pattern": "[A-Za-z ]+", "max_length": 30}],
            "effective_from": body["effective_from"],
            "effective_until": None,
        }
        # no explicit start: in force from its approval
        assert when(body["effective_from"]) == when(version["approved_at"])

    async def test_default_locale_is_used_when_none_is_asked_for(self, api: Api) -> None:
        await api.create_phrase(default_locale="en-GB")
        await api.approved_version(texts={"en-GB": "Recorded.", "fr-FR": "Enregistré."})
        body = await resolved(api)
        assert (body["locale"], body["requested_locale"]) == ("en-GB", "en-GB")

    async def test_any_role_can_resolve_but_not_anonymously(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()
        for who in ("agent-1", "audrey", "alice", "bob", "admin"):
            response = await resolve(api, who=who)
            assert response.status_code == 200, (who, response.text)
        response = await api.http.get("/v1/phrases/recording/resolve")
        assert_problem(response, 401, "unauthenticated")

    async def test_bad_requests_are_refused(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()
        assert_problem(await resolve(api, "nope"), 404, "phrase-not-found")
        assert_problem(await resolve(api, locale="en-GB-x-foo"), 422, "validation-error")
        assert_problem(await resolve(api, at="yesterday"), 422, "validation-error")
        assert_problem(await resolve(api, version=0), 422, "validation-error")


class TestWhichVersion:
    async def test_only_approved_versions_are_heard(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version(texts={"en-US": "Draft."})
        await submitted_version(api, texts={"en-US": "In review."})
        problem = assert_problem(await resolve(api), 404, "no-version-in-force")
        assert "recording" in problem["detail"]

        await api.approved_version(texts={"en-US": "Approved."})
        await api.create_version(texts={"en-US": "Newer draft."})
        body = await resolved(api)
        assert (body["version"], body["text"]) == (3, "Approved.")

        await api.approved_version(texts={"en-US": "Approved later."})
        body = await resolved(api)
        assert (body["version"], body["text"]) == (5, "Approved later.")

    async def test_latest_effective_from_wins_not_the_highest_number(self, api: Api) -> None:
        await api.create_phrase()
        t = now()
        await api.approved_version(texts={"en-US": "Two days."}, effective_from=iso(t - days(2)))
        await api.approved_version(texts={"en-US": "One day."}, effective_from=iso(t - days(1)))
        await api.approved_version(texts={"en-US": "Backdated."}, effective_from=iso(t - days(3)))
        body = await resolved(api)
        assert (body["version"], body["text"]) == (2, "One day.")
        assert when(body["effective_from"]) == t - days(1)

    async def test_future_dated_version_is_not_used_before_its_start(self, api: Api) -> None:
        await api.create_phrase()
        t = now()
        await api.approved_version(texts={"en-US": "Tomorrow."}, effective_from=iso(t + days(1)))
        problem = assert_problem(await resolve(api), 404, "no-version-in-force")
        assert "outside their effective window" in problem["detail"]

        await api.approved_version(texts={"en-US": "Current."})
        assert (await resolved(api))["text"] == "Current."
        assert (await resolved(api, at=iso(t + days(1) - days(0.001))))["text"] == "Current."
        later = await resolved(api, at=iso(t + days(1)))
        assert (later["version"], later["text"]) == (1, "Tomorrow.")

    async def test_expired_version_is_not_used_after_its_end(self, api: Api) -> None:
        await api.create_phrase()
        t = now()
        await api.approved_version(
            texts={"en-US": "Next week."},
            effective_from=iso(t + days(1)),
            effective_until=iso(t + days(2)),
        )
        assert_problem(await resolve(api), 404, "no-version-in-force")
        inside = await resolved(api, at=iso(t + days(1.5)))
        assert inside["text"] == "Next week."
        assert when(inside["effective_until"]) == t + days(2)
        assert_problem(await resolve(api, at=iso(t + days(2))), 404, "no-version-in-force")

        await api.approved_version(texts={"en-US": "Standing."}, effective_from=iso(t - days(3)))
        await api.approved_version(
            texts={"en-US": "Campaign."},
            effective_from=iso(t - days(1)),
            effective_until=iso(t + days(1)),
        )
        assert (await resolved(api))["text"] == "Campaign."
        body = await resolved(api, at=iso(t + days(1)))  # Campaign's end is exclusive
        assert (body["version"], body["text"]) == (1, "Next week.")
        body = await resolved(api, at=iso(t + days(2)))  # and so is Next week's
        assert (body["version"], body["text"]) == (2, "Standing.")

    async def test_backdated_start_does_not_count_before_the_approval(self, api: Api) -> None:
        await api.create_phrase()
        before_approval = now()
        version = await api.approved_version(
            texts={"en-US": "Backdated."}, effective_from=iso(before_approval - days(7))
        )
        problem = assert_problem(
            await resolve(api, at=iso(before_approval)), 404, "no-version-in-force"
        )
        assert "recording" in problem["detail"]
        body = await resolved(api, at=version["approved_at"])
        assert body["text"] == "Backdated."
        assert when(body["effective_from"]) == before_approval - days(7)  # as declared

    async def test_retired_version_no_longer_resolves(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Old."})
        await api.approved_version(texts={"en-US": "New."})
        retired = await api.transition("recording", 2, "retire", "bob", {"reason": "wrong"})
        assert retired.status_code == 200, retired.text
        assert (await resolved(api))["text"] == "Old."

        retired = await api.transition("recording", 1, "retire", "bob", {"reason": "all gone"})
        assert retired.status_code == 200, retired.text
        assert_problem(await resolve(api), 404, "no-version-in-force")
        assert_problem(await resolve(api, version=1), 404, "no-version-in-force")

    async def test_retired_version_still_answers_for_instants_before_its_retirement(
        self, api: Api
    ) -> None:
        await api.create_phrase()
        approved = await api.approved_version(texts={"en-US": "Then."})
        retired = await api.transition("recording", 1, "retire", "bob", {"reason": "replaced"})
        assert retired.status_code == 200, retired.text
        retired_at = retired.json()["retired_at"]
        then = await resolved(api, at=approved["approved_at"])
        assert (then["text"], when(then["effective_until"])) == ("Then.", when(retired_at))
        assert (await resolved(api, at=approved["approved_at"], version=1))["version"] == 1
        assert_problem(await resolve(api, at=retired_at), 404, "no-version-in-force")

    async def test_naive_at_is_taken_as_utc(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(effective_from="2030-01-01T00:00:00Z")
        assert_problem(await resolve(api, at="2029-12-31T23:59:59"), 404, "no-version-in-force")
        assert (await resolved(api, at="2030-01-01T00:00:00"))["version"] == 1
        assert_problem(
            await resolve(api, at="2030-01-01T00:30:00+01:00"), 404, "no-version-in-force"
        )


class TestPinnedVersion:
    async def test_pinned_approved_version_is_returned(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Old."})
        await api.approved_version(texts={"en-US": "New."})
        body = await resolved(api, version=1)
        assert (body["version"], body["text"]) == (1, "Old.")
        assert_problem(await resolve(api, version=9), 404, "version-not-found")

    async def test_pinned_version_that_is_not_approved_is_refused(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Approved."})
        await api.create_version(texts={"en-US": "Draft."})
        await submitted_version(api, texts={"en-US": "In review."})
        await submitted_version(api, texts={"en-US": "Rejected."})
        await api.transition("recording", 4, "reject", "bob", {"reason": "no"})
        for number, status in ((2, "draft"), (3, "in_review"), (4, "rejected")):
            response = await resolve(api, version=number)
            problem = assert_refused(response, 404, "no-version-in-force", status)
            assert status in problem["detail"]

    async def test_pinned_version_outside_its_window_is_refused(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(effective_from=iso(now() + days(1)))
        assert_problem(await resolve(api, version=1), 404, "no-version-in-force")
        assert (await resolved(api, version=1, at=iso(now() + days(2))))["version"] == 1


class TestLocaleChain:
    async def approved(self, api: Api, *, cross_language: bool = False) -> None:
        await api.create_phrase(default_locale="en-US", cross_language_fallback=cross_language)
        await api.approved_version(
            texts={
                "en": "Generic English.",
                "en-US": "American English.",
                "en-GB": "British English.",
                "de-DE": "Deutsch.",
            }
        )

    async def test_exact_locale_then_parent(self, api: Api) -> None:
        await self.approved(api)
        body = await resolved(api, locale="en-gb")
        assert (body["locale"], body["requested_locale"], body["text"]) == (
            "en-GB",
            "en-GB",
            "British English.",
        )
        assert (body["fallback"], body["fallback_kind"]) == (False, "exact")
        body = await resolved(api, locale="en-AU")  # the parent "en" comes before siblings
        assert (body["locale"], body["fallback_kind"]) == ("en", "parent")

    async def test_parent_when_the_region_is_missing(self, api: Api) -> None:
        await api.create_phrase(default_locale="en")
        await api.approved_version(texts={"en": "Generic English.", "de-DE": "Deutsch."})
        body = await resolved(api, locale="en-GB")
        assert (body["locale"], body["requested_locale"]) == ("en", "en-GB")
        assert (body["fallback"], body["fallback_kind"]) == (True, "parent")
        assert body["sha256"] == hashlib.sha256(b"Generic English.").hexdigest()

    async def test_sibling_prefers_the_default_locale(self, api: Api) -> None:
        await api.create_phrase(default_locale="en-US")
        await api.approved_version(texts={"en-GB": "British.", "en-US": "American."})
        body = await resolved(api, locale="en-AU")
        assert (body["locale"], body["requested_locale"], body["text"]) == (
            "en-US",
            "en-AU",
            "American.",
        )
        assert (body["fallback"], body["fallback_kind"]) == (True, "sibling")

    async def test_other_language_is_refused(self, api: Api) -> None:
        await self.approved(api)
        problem = assert_problem(await resolve(api, locale="fr-CA"), 404, "locale-not-available")
        assert "fr-CA" in problem["detail"]
        assert problem["available_locales"] == ["de-DE", "en", "en-GB", "en-US"]

    async def test_other_language_falls_back_when_the_phrase_allows_it(self, api: Api) -> None:
        await self.approved(api, cross_language=True)
        body = await resolved(api, locale="fr-CA")
        assert (body["locale"], body["requested_locale"], body["text"]) == (
            "en-US",
            "fr-CA",
            "American English.",
        )
        assert (body["fallback"], body["fallback_kind"]) == (True, "default_locale")
        body = await resolved(api, locale="de-AT")  # the same language still comes first
        assert (body["locale"], body["fallback_kind"]) == ("de-DE", "sibling")
