"""Comparing two versions of a phrase."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, assert_problem


async def diff(api: Api, number: int, against: Any, key: str = "recording") -> Any:
    return await api.http.get(
        f"/v1/phrases/{key}/versions/{number}/diff",
        params={"against": against},
        headers=api.as_("audrey"),
    )


class TestDiff:
    async def test_locales_are_added_removed_changed_or_unchanged(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version(
            texts={
                "en-US": "This call is recorded, {{name}}.\nThank you.",
                "fr-FR": "Cet appel est enregistré, {{name}}.",
                "de-DE": "Dieser Anruf wird aufgezeichnet, {{name}}.",
            },
            variables=[{"name": "name"}],
            change_note="first",
        )
        await api.create_version(
            texts={
                "en-US": "Hi {{name}}, this call is recorded.\nThank you.",
                "fr-FR": "Cet appel est enregistré, {{name}}.",
                "es-ES": "Esta llamada se graba, {{name}}.",
            },
            variables=[{"name": "name", "max_length": 40}],
            change_note="greet by name",
        )
        response = await diff(api, 2, 1)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["phrase_key"], body["version"], body["against"]) == ("recording", 2, 1)
        by_locale = {d["locale"]: d for d in body["locales"]}
        assert [d["locale"] for d in body["locales"]] == ["de-DE", "en-US", "es-ES", "fr-FR"]
        assert {k: d["change"] for k, d in by_locale.items()} == {
            "de-DE": "removed",
            "en-US": "changed",
            "es-ES": "added",
            "fr-FR": "unchanged",
        }
        assert by_locale["en-US"]["diff"].splitlines() == [
            "--- recording/1/en-US",
            "+++ recording/2/en-US",
            "@@ -1,2 +1,2 @@",
            "-This call is recorded, {{name}}.",
            "+Hi {{name}}, this call is recorded.",
            " Thank you.",
        ]
        assert "-Dieser Anruf wird aufgezeichnet, {{name}}." in by_locale["de-DE"]["diff"]
        assert "+Esta llamada se graba, {{name}}." in by_locale["es-ES"]["diff"]
        assert by_locale["fr-FR"]["diff"] == ""

        fields = {f["field"]: (f["before"], f["after"]) for f in body["fields"]}
        assert fields == {
            "variables": ([{"name": "name"}], [{"name": "name", "max_length": 40}]),
            "change_note": ("first", "greet by name"),
        }

    async def test_window_changes_are_listed(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        await api.create_version(effective_from="2030-01-01T00:00:00Z")
        body = (await diff(api, 2, 1)).json()
        assert [d["change"] for d in body["locales"]] == ["unchanged"]
        assert [f["field"] for f in body["fields"]] == ["effective_from"]
        before, after = body["fields"][0]["before"], body["fields"][0]["after"]
        assert before is None
        assert after.startswith("2030-01-01T00:00:00")

    async def test_version_against_itself_has_no_changes(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        body = (await diff(api, 1, 1)).json()
        assert body["fields"] == []
        assert [(d["change"], d["diff"]) for d in body["locales"]] == [("unchanged", "")]

    async def test_bad_comparisons_are_refused(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        assert_problem(await diff(api, 1, 5), 404, "version-not-found")
        assert_problem(await diff(api, 5, 1), 404, "version-not-found")
        assert_problem(await diff(api, 1, 1, key="nope"), 404, "phrase-not-found")
        response = await api.http.get(
            "/v1/phrases/recording/versions/1/diff", headers=api.as_("audrey")
        )
        assert_problem(response, 422, "validation-error")
        assert_problem(await diff(api, 1, "two"), 422, "validation-error")
