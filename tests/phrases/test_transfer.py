"""Phrases as code: export approved versions, import them elsewhere as drafts (REST and CLI)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from service.settings import Settings
from tests.helpers import Api, assert_problem, cli_environment, run_cli_async
from tests.phrases.support import MakeApi, assert_refused, get_version, list_keys, resolve

RECORDING_V2 = {
    "en-US": "Hi {{name}}, this call is recorded.",
    "fr-FR": "Bonjour {{name}}, cet appel est enregistré.",
}


async def build_library(api: Api) -> None:
    """recording: v1 and v2 approved, v3 draft; consent: a draft only; greeting: retired only."""
    await api.create_phrase("recording", tags=["legal", "gdpr"], cross_language_fallback=True)
    await api.approved_version("recording", texts={"en-US": "This call is recorded."})
    await api.approved_version(
        "recording",
        texts=RECORDING_V2,
        variables=[{"name": "name", "pattern": "[A-Za-z ]+", "max_length": 40}],
        change_note="greet by name",
        effective_from="2020-01-01T00:00:00Z",
        effective_until="2999-01-01T00:00:00Z",
    )
    await api.create_version("recording", texts={"en-US": "UNAPPROVED DRAFT TEXT"})
    await api.create_phrase("consent", title="Consent", category="consent", default_locale="de-DE")
    await api.create_version("consent", texts={"de-DE": "UNAPPROVED CONSENT"})
    await api.create_phrase("greeting", title="Greeting", category="greeting")
    await api.approved_version("greeting", texts={"en-US": "RETIRED GREETING"})
    retired = await api.transition("greeting", 1, "retire", "bob", {"reason": "old"})
    assert retired.status_code == 200, retired.text


async def export(api: Api, fmt: str = "yaml", who: str = "agent-1") -> httpx.Response:
    response = await api.http.get(
        "/v1/phrases/export", params={"format": fmt}, headers=api.as_(who)
    )
    assert response.status_code == 200, response.text
    return response


async def import_(
    api: Api, content: bytes, content_type: str = "application/yaml", who: str = "carol"
) -> httpx.Response:
    headers = {**api.as_(who), "Content-Type": content_type}
    return await api.http.post("/v1/phrases/import", content=content, headers=headers)


def check_exported_library(document: dict[str, Any]) -> None:
    assert document["format"] == "compliance-phrases/1"
    phrases = {p["key"]: p for p in document["phrases"]}
    assert set(phrases) == {"consent", "greeting", "recording"}
    recording = phrases["recording"]
    assert recording["tags"] == ["gdpr", "legal"]
    assert recording["cross_language_fallback"] is True
    assert [(v["number"], v["status"]) for v in recording["versions"]] == [
        (1, "approved"),
        (2, "approved"),
    ]
    latest = recording["versions"][-1]
    assert latest["texts"] == RECORDING_V2
    assert latest["variables"] == [{"name": "name", "pattern": "[A-Za-z ]+", "max_length": 40}]
    assert latest["approved_by"] == ["bob"]
    assert phrases["consent"]["versions"] == []
    assert phrases["consent"]["default_locale"] == "de-DE"
    assert phrases["greeting"]["versions"] == []


class TestExport:
    async def test_yaml_export_holds_approved_versions_only(self, api: Api) -> None:
        await build_library(api)
        response = await export(api, "yaml")
        assert response.headers["content-type"].startswith("application/yaml")
        assert 'filename="phrases.yaml"' in response.headers["content-disposition"]
        for unapproved in ("UNAPPROVED DRAFT TEXT", "UNAPPROVED CONSENT", "RETIRED GREETING"):
            assert unapproved not in response.text
        check_exported_library(yaml.safe_load(response.text))

    async def test_json_export_says_the_same_as_yaml(self, api: Api) -> None:
        await build_library(api)
        as_json = (await export(api, "json")).json()
        as_yaml = yaml.safe_load((await export(api, "yaml")).text)
        check_exported_library(as_json)
        del as_json["exported_at"], as_yaml["exported_at"]
        assert as_json == as_yaml
        response = await api.http.get(
            "/v1/phrases/export", params={"format": "xml"}, headers=api.as_("alice")
        )
        assert_problem(response, 422, "validation-error")


class TestImport:
    async def test_import_into_a_fresh_library_creates_drafts_never_approvals(
        self, api: Api, fresh_api: Api
    ) -> None:
        await build_library(api)
        document = (await export(api)).content

        response = await import_(fresh_api, document)
        assert response.status_code == 200, response.text
        report = response.json()
        assert sorted(report["phrases_created"]) == ["consent", "greeting", "recording"]
        assert report["drafts_created"] == [{"key": "recording", "number": 1}]
        assert report["unchanged"] == []

        versions = await fresh_api.http.get(
            "/v1/phrases/recording/versions", headers=fresh_api.as_("alice")
        )
        [draft] = versions.json()["items"]
        assert draft["status"] == "draft"
        assert draft["texts"] == RECORDING_V2
        assert draft["author"] == "carol"
        assert draft["approvals"] == []
        assert draft["change_note"] == "greet by name"
        assert draft["effective_from"].startswith("2020-01-01T00:00:00")
        assert await list_keys(fresh_api, status="approved") == []
        assert_problem(await resolve(fresh_api), 404, "no-version-in-force")
        phrase = await fresh_api.http.get("/v1/phrases/recording", headers=fresh_api.as_("bob"))
        assert phrase.json()["tags"] == ["gdpr", "legal"]
        assert phrase.json()["cross_language_fallback"] is True

        # The imported draft goes through review like any other, with four eyes.
        submitted = await fresh_api.transition("recording", 1, "submit", "carol")
        assert submitted.status_code == 200, submitted.text
        approved = await fresh_api.transition("recording", 1, "approve", "bob")
        assert approved.status_code == 200, approved.text

    async def test_importing_the_same_document_again_changes_nothing(
        self, api: Api, fresh_api: Api
    ) -> None:
        await build_library(api)
        document = (await export(api, "json")).content
        first = await import_(fresh_api, document, "application/json")
        assert first.status_code == 200, first.text

        again = await import_(fresh_api, document, "application/json")
        assert again.status_code == 200, again.text
        assert again.json() == {
            "phrases_created": [],
            "drafts_created": [],
            "unchanged": ["recording"],
            "metadata_ignored": [],
        }
        versions = await fresh_api.http.get(
            "/v1/phrases/recording/versions", headers=fresh_api.as_("alice")
        )
        assert len(versions.json()["items"]) == 1

    async def test_changed_document_adds_a_new_draft(self, api: Api) -> None:
        await build_library(api)
        document = yaml.safe_load((await export(api)).text)
        recording = next(p for p in document["phrases"] if p["key"] == "recording")
        recording["versions"][-1]["texts"]["en-US"] = "Hello {{name}}, this call is recorded."

        heard = (await resolve(api, locale="en-US")).json()

        response = await import_(api, yaml.safe_dump(document).encode())
        assert response.status_code == 200, response.text
        assert response.json()["drafts_created"] == [{"key": "recording", "number": 4}]
        draft = (await get_version(api, "recording", 4)).json()
        assert draft["status"] == "draft"
        assert draft["texts"]["en-US"] == "Hello {{name}}, this call is recorded."
        assert (await resolve(api, locale="en-US")).json() == heard  # callers hear the same

    async def test_changed_phrase_metadata_is_reported_not_applied(self, api: Api) -> None:
        await build_library(api)
        document = yaml.safe_load((await export(api)).text)
        recording = next(p for p in document["phrases"] if p["key"] == "recording")
        recording["title"] = "A new title the import must not apply"
        response = await import_(api, yaml.safe_dump(document).encode())
        assert response.status_code == 200, response.text
        assert response.json()["metadata_ignored"] == ["recording"]
        phrase = await api.http.get("/v1/phrases/recording", headers=api.as_("bob"))
        assert phrase.json()["title"] == "Call recording disclosure"

    async def test_yaml_aliases_are_refused(self, api: Api) -> None:
        bomb = b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        bomb += b"phrases: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        for content in (bomb, b"phrases: &p [*p]\n"):
            response = await import_(api, content)
            assert "aliases" in assert_refused(response, 422, "invalid-input", content)["detail"]
        assert await list_keys(api) == []

    async def test_other_content_types_are_415(self, api: Api) -> None:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            response = await import_(api, yaml.safe_dump(valid_document()).encode(), content_type)
            assert_refused(response, 415, "unsupported-media-type", content_type)
        assert await list_keys(api) == []

    async def test_import_needs_the_editor_role(self, api: Api) -> None:
        for who in ("bob", "agent-1", "audrey"):
            response = await import_(api, yaml.safe_dump(valid_document()).encode(), who=who)
            assert_refused(response, 403, "forbidden", who)
        assert await list_keys(api) == []


def valid_document() -> dict[str, Any]:
    return {
        "format": "compliance-phrases/1",
        "phrases": [
            {
                "key": "aaa-first",
                "title": "Written before the bad entry",
                "category": "disclosure",
                "default_locale": "en-US",
                "versions": [{"texts": {"en-US": "Valid."}}],
            },
            {
                "key": "bbb-second",
                "title": "Second",
                "category": "disclaimer",
                "tags": ["legal"],
                "default_locale": "en-US",
                "versions": [
                    {
                        "texts": {"en-US": "Hi {{name}}."},
                        "variables": [{"name": "name"}],
                        "effective_from": "2030-01-01T00:00:00Z",
                        "effective_until": "2031-01-01T00:00:00Z",
                    }
                ],
            },
        ],
    }


def _second(doc: dict[str, Any]) -> dict[str, Any]:
    phrase: dict[str, Any] = doc["phrases"][1]
    return phrase


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any] = _second(doc)["versions"][0]
    return version


BREAKAGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "missing-default-locale": lambda d: _version(d).update(texts={"fr-FR": "Bonjour {{name}}."}),
    "undeclared-placeholder": lambda d: _version(d).update(variables=[]),
    "empty-text": lambda d: _version(d)["texts"].update({"de-DE": " "}),
    "text-too-long": lambda d: _version(d).update(texts={"en-US": "{{name}}" + "a" * 9999}),
    "two-spellings-of-a-locale": lambda d: _version(d)["texts"].update({"en-us": "Hi {{name}}!"}),
    "malformed-locale": lambda d: _version(d)["texts"].update({"en-GB-x-pirate": "Arr {{name}}"}),
    "bad-regex": lambda d: _version(d).update(variables=[{"name": "name", "pattern": "(["}]),
    "window-inverted": lambda d: _version(d).update(effective_until="2029-01-01T00:00:00Z"),
    "window-empty": lambda d: _version(d).update(effective_until="2030-01-01T00:00:00Z"),
    "reserved-key": lambda d: _second(d).update(key="export"),
    "malformed-key": lambda d: _second(d).update(key="Bad Key"),
    "duplicate-key": lambda d: _second(d).update(key="aaa-first"),
    "unknown-category": lambda d: _second(d).update(category="marketing"),
    "too-many-tags": lambda d: _second(d).update(tags=[f"t{i}" for i in range(21)]),
    "description-too-long": lambda d: _second(d).update(description="x" * 5001),
    "change-note-too-long": lambda d: _version(d).update(change_note="x" * 5001),
    "too-many-variables": lambda d: _version(d).update(
        variables=[{"name": f"v{i}"} for i in range(51)],
        texts={"en-US": "".join(f"{{{{v{i}}}}}" for i in range(51))},
    ),
    "unknown-field": lambda d: _second(d).update(surprise=True),
    "wrong-format": lambda d: d.update(format="compliance-phrases/99"),
}


class TestImportIsAllOrNothing:
    async def test_one_bad_entry_refuses_the_whole_document(self, api: Api) -> None:
        for breakage, breaks in sorted(BREAKAGES.items()):
            document = valid_document()
            breaks(document)
            response = await import_(api, yaml.safe_dump(document).encode())
            problem = assert_refused(response, 422, None, breakage)
            assert problem["type"] in (
                "/problems/invalid-input",
                "/problems/invalid-version-content",
            )
            assert await list_keys(api) == [], breakage
        # the unbroken document imports: it was the breakage that was refused
        response = await import_(api, yaml.safe_dump(valid_document()).encode())
        assert response.status_code == 200, response.text
        assert response.json()["phrases_created"] == ["aaa-first", "bbb-second"]

    async def test_unreadable_document_is_422(self, api: Api) -> None:
        for content, content_type in (
            (b"phrases: [unclosed", "application/yaml"),
            (b'{"phrases": ', "application/json"),
            (b"\xff\xfe not utf-8", "application/yaml"),
            (b"just a string", "application/yaml"),
            (b"", "application/yaml"),
        ):
            response = await import_(api, content, content_type)
            assert_refused(response, 422, "invalid-input", content)
        assert await list_keys(api) == []


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    result = await run_cli_async(*args, env=cli_environment(database_url))
    return result.returncode, result.stdout, result.stderr


class TestCommandLine:
    async def test_export_and_import_round_trip_the_library(
        self,
        api: Api,
        database_url: str,
        fresh_settings: Settings,
        make_api: MakeApi,
        tmp_path: Path,
    ) -> None:
        await build_library(api)
        exported = tmp_path / "library.yaml"

        (code, _, err), (json_code, json_out, json_err) = await asyncio.gather(
            cli(database_url, "phrases", "export", str(exported)),
            cli(database_url, "phrases", "export", "-", "--format", "json"),
        )
        assert code == 0, err
        on_disk = yaml.safe_load(exported.read_text(encoding="utf-8"))
        check_exported_library(on_disk)
        assert json_code == 0, json_err
        check_exported_library(json.loads(json_out))
        over_http = yaml.safe_load((await export(api)).text)
        del on_disk["exported_at"], over_http["exported_at"]
        assert on_disk == over_http

        fresh = fresh_settings.database_url
        code, out, err = await cli(fresh, "phrases", "import", str(exported), "--principal", "zed")
        assert code == 2
        assert "no active editor key" in err  # a made-up author would dodge four eyes
        code, out, err = await cli(
            fresh, "keys", "create", "--principal", "zed", "--role", "editor"
        )
        assert code == 0, err
        code, out, err = await cli(fresh, "phrases", "import", str(exported), "--principal", "ZED")
        assert code == 0, err
        report = json.loads(out)
        assert sorted(report["phrases_created"]) == ["consent", "greeting", "recording"]
        assert report["drafts_created"] == [{"key": "recording", "number": 1}]

        code, out, err = await cli(fresh, "phrases", "import", str(exported), "--principal", "zed")
        assert code == 0, err
        assert json.loads(out) == {
            "phrases_created": [],
            "drafts_created": [],
            "unchanged": ["recording"],
            "metadata_ignored": [],
        }

        imported = await make_api(fresh_settings)
        draft = (await get_version(imported, "recording", 1)).json()
        assert draft["status"] == "draft"
        assert draft["texts"] == RECORDING_V2
        assert draft["author"] == "zed"
        assert sorted(await list_keys(imported)) == ["consent", "greeting", "recording"]
        assert await list_keys(imported, status="approved") == []

    async def test_import_of_a_bad_file_fails_and_writes_nothing(
        self, api: Api, database_url: str, tmp_path: Path
    ) -> None:
        document = valid_document()
        _version(document).update(texts={"fr-FR": "Bonjour {{name}}."})
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(document), encoding="utf-8")

        code, _, err = await cli(
            database_url, "phrases", "import", str(bad), "--principal", "alice"
        )
        assert code == 2
        assert "bbb-second" in err
        assert "en-US" in err
        assert await list_keys(api) == []
