"""Every error is an RFC 9457 problem, and a failed request leaves nothing behind."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from service.kit.db import create_engine
from tests.helpers import ADMIN_KEY, Api, assert_problem, auth
from tests.kit.conftest import EXPLODE_PATH, SECRET_DETAIL

PHRASE = {
    "key": "recording",
    "title": "Recording",
    "category": "disclosure",
    "default_locale": "en",
}


async def audit_actions(api: Api) -> list[str]:
    response = await api.http.get("/v1/audit", params={"limit": 500}, headers=api.as_("audrey"))
    assert response.status_code == 200, response.text
    return [e["action"] for e in response.json()["items"]]


async def phrase_keys(api: Api) -> list[str]:
    response = await api.http.get("/v1/phrases", headers=api.as_("alice"))
    assert response.status_code == 200, response.text
    return [p["key"] for p in response.json()["items"]]


class TestRoutingErrors:
    @pytest.mark.parametrize("path", ["/v1/nothing-here", "/nothing-here", "/v1/phrases/a/b/c/d/e"])
    async def test_unknown_route_is_404_problem(self, client: httpx.AsyncClient, path: str) -> None:
        for headers in ({}, auth(ADMIN_KEY)):
            body = assert_problem(await client.get(path, headers=headers), 404, "not-found")
            assert body["instance"] == path

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("PUT", "/v1/phrases", {"GET", "POST"}),
            ("DELETE", "/v1/phrases/recording", {"GET", "PATCH"}),
            ("GET", "/v1/phrases/recording/versions/1/approve", {"POST"}),
            ("POST", "/healthz", {"GET"}),
        ],
    )
    async def test_wrong_method_is_405_problem_naming_the_methods_that_work(
        self, client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
    ) -> None:
        response = await client.request(method, path, headers=auth(ADMIN_KEY))

        assert_problem(response, 405, "method-not-allowed")
        assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


class TestValidationErrors:
    async def test_malformed_json_is_422_and_creates_nothing(self, api: Api) -> None:
        response = await api.http.post(
            "/v1/phrases",
            content=b'{"key": "recording", "title": ',
            headers={**api.as_("alice"), "content-type": "application/json"},
        )

        body = assert_problem(response, 422, "validation-error")
        assert body["errors"][0]["type"] == "json_invalid"
        assert await phrase_keys(api) == []

    async def test_a_body_that_is_not_utf8_is_422_and_creates_nothing(self, api: Api) -> None:
        response = await api.http.post(
            "/v1/phrases",
            content=b"\xff\xfe{",
            headers={**api.as_("alice"), "content-type": "application/json"},
        )

        body = assert_problem(response, 422, "validation-error")
        assert body["errors"] == [
            {"loc": ["body"], "msg": "the body is not UTF-8 text", "type": "unicode_decode"}
        ]
        assert await phrase_keys(api) == []

    async def test_wrong_field_types_are_422_naming_each_field(self, api: Api) -> None:
        body = {"key": 5, "title": ["x"], "category": "gossip", "default_locale": "en"}

        response = await api.http.post("/v1/phrases", json=body, headers=api.as_("alice"))

        problem = assert_problem(response, 422, "validation-error")
        fields = {tuple(e["loc"]) for e in problem["errors"]}
        assert {("body", "key"), ("body", "title"), ("body", "category")} <= fields
        assert "body.category" in problem["detail"]

    async def test_json_that_is_not_an_object_is_422(self, api: Api) -> None:
        for payload in ([], [PHRASE], "recording", 42, None):
            response = await api.http.post(
                "/v1/phrases",
                content=json.dumps(payload).encode(),
                headers={**api.as_("alice"), "content-type": "application/json"},
            )

            assert_problem(response, 422, "validation-error")

    async def test_json_sent_as_plain_text_is_422(self, api: Api) -> None:
        response = await api.http.post(
            "/v1/phrases",
            content=json.dumps(PHRASE).encode(),
            headers={**api.as_("alice"), "content-type": "text/plain"},
        )

        assert_problem(response, 422, "validation-error")
        assert await phrase_keys(api) == []

    async def test_bad_query_or_path_parameter_is_422(self, api: Api) -> None:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("/v1/phrases", {"limit": "many"}),
            ("/v1/phrases", {"limit": 0}),
            ("/v1/phrases", {"limit": 501}),
            ("/v1/phrases", {"status": "pending"}),
            ("/v1/audit", {"since": "yesterday"}),
            ("/v1/phrases/recording/versions/one", {}),
        ]
        for path, params in cases:
            response = await api.http.get(path, params=params, headers=api.as_("audrey"))

            assert_problem(response, 422, "validation-error")

    async def test_cursor_the_service_did_not_issue_is_422(self, api: Api) -> None:
        for path in ("/v1/phrases", "/v1/audit"):
            for cursor in ("not-base64!", "eyJ4IjoxfQ", "W10"):
                response = await api.http.get(
                    path, params={"cursor": cursor}, headers=api.as_("audrey")
                )

                body = assert_problem(response, 422, "invalid-input")
                assert body["param"] == "cursor"


class TestOutOfRangeInput:
    """Values Python accepts but the database or the calendar cannot hold are 422, never 500."""

    async def test_huge_numbers_and_far_times_are_422(self, api: Api) -> None:
        await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
        huge = "99999999999999999999"
        for url in (
            f"/v1/phrases/recording/versions/{huge}",
            f"/v1/phrases/recording/versions/{2**31}",
            f"/v1/phrases/recording/resolve?version={huge}",
            "/v1/phrases/recording/versions/1/diff?against=3000000000",
            "/v1/phrases/recording/resolve?at=0001-01-01T00:00:00%2B01:00",
        ):
            response = await api.http.get(url, headers=api.as_("audrey"))
            assert_problem(response, 422, "validation-error")

    async def test_far_effective_time_and_lone_surrogate_are_422(self, api: Api) -> None:
        await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
        bodies = (
            b'{"texts": {"en": "Hi"}, "effective_from": "0001-01-01T00:00:00+05:00"}',
            b'{"texts": {"en": "hi \\udc00"}}',
        )
        for body in bodies:
            response = await api.http.post(
                "/v1/phrases/recording/versions",
                content=body,
                headers={**api.as_("alice"), "content-type": "application/json"},
            )
            assert_problem(response, 422, "validation-error")
        assert "version.created" not in await audit_actions(api)


class TestNulCharacter:
    """PostgreSQL cannot store U+0000; both backends refuse it as bad input, never a 500."""

    async def test_nul_in_a_body_is_422_and_creates_nothing(self, api: Api) -> None:
        for body in (
            {**PHRASE, "title": "Record\x00ing"},
            {**PHRASE, "tags": ["ok", "b\x00d"]},
        ):
            response = await api.http.post("/v1/phrases", json=body, headers=api.as_("alice"))
            assert "U+0000" in assert_problem(response, 422, "validation-error")["detail"]
        await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
        texts = {"en": "Hello\x00"}
        response = await api.http.post(
            "/v1/phrases/recording/versions", json={"texts": texts}, headers=api.as_("alice")
        )
        assert_problem(response, 422, "validation-error")
        assert await phrase_keys(api) == ["recording"]
        assert "version.created" not in await audit_actions(api)

    async def test_nul_in_a_path_or_query_is_422(self, api: Api) -> None:
        for url in ("/v1/phrases/rec%00ording", "/v1/phrases?q=a%00b", "/v1/audit?action=%00"):
            response = await api.http.get(url, headers=api.as_("audrey"))
            assert_problem(response, 422, "validation-error")


class TestNothingWrittenOnFailure:
    async def test_invalid_phrase_leaves_no_row_and_no_audit_event(self, api: Api) -> None:
        before = await audit_actions(api)

        response = await api.http.post(
            "/v1/phrases",
            json={**PHRASE, "default_locale": "not a locale"},
            headers=api.as_("alice"),
        )

        assert_problem(response, 422)
        assert await phrase_keys(api) == []
        assert await audit_actions(api) == before

    async def test_duplicate_phrase_is_409_and_records_one_creation(self, api: Api) -> None:
        first = await api.http.post("/v1/phrases", json=PHRASE, headers=api.as_("alice"))
        second = await api.http.post(
            "/v1/phrases", json={**PHRASE, "title": "Other"}, headers=api.as_("carol")
        )

        assert first.status_code == 201, first.text
        assert_problem(second, 409)
        assert (await audit_actions(api)).count("phrase.created") == 1
        phrase = await api.http.get("/v1/phrases/recording", headers=api.as_("alice"))
        assert phrase.json()["created_by"] == "alice"

    async def test_import_failing_halfway_writes_nothing(self, api: Api) -> None:
        before = await audit_actions(api)
        document = {
            "phrases": [
                {**PHRASE, "key": "first", "versions": [{"texts": {"en": "Fine."}}]},
                # Valid on its face; only the library can tell its default locale has no text.
                {**PHRASE, "key": "second", "versions": [{"texts": {"fr": "Pas en anglais."}}]},
            ]
        }

        response = await api.http.post(
            "/v1/phrases/import", json=document, headers=api.as_("alice")
        )

        assert_problem(response, 422, "invalid-input")
        assert await phrase_keys(api) == []
        assert await audit_actions(api) == before


class TestUnexpectedErrors:
    async def test_unexpected_exception_is_500_problem_without_internals(
        self, fragile_api: Api, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.ERROR):
            response = await fragile_api.http.post(EXPLODE_PATH, headers=fragile_api.as_("alice"))

        body = assert_problem(response, 500, "internal-error")
        assert set(body) == {"type", "title", "status", "detail", "instance", "request_id"}
        assert body["request_id"] == response.headers["x-request-id"]  # to quote to support
        for leak in ("hunter2", "internals.py", "RuntimeError", "Traceback", "boom"):
            assert leak not in response.text
        assert SECRET_DETAIL in caplog.text  # the operator still gets the cause, in the log

    async def test_unexpected_exception_rolls_back_what_the_request_wrote(
        self, fragile_api: Api
    ) -> None:
        before = await audit_actions(fragile_api)

        await fragile_api.http.post(EXPLODE_PATH, headers=fragile_api.as_("alice"))

        keys = await fragile_api.http.get("/v1/api-keys", headers=fragile_api.as_("admin"))
        assert "ghost" not in {k["principal"] for k in keys.json()["items"]}
        assert await audit_actions(fragile_api) == before
        verify = await fragile_api.http.get("/v1/audit/verify", headers=fragile_api.as_("audrey"))
        assert verify.json()["ok"] is True

    async def test_database_failure_is_500_without_sql(
        self, fragile_api: Api, database_url: str
    ) -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                await connection.execute(sa.text("DROP TABLE audit_events"))
        finally:
            await engine.dispose()

        response = await fragile_api.http.get("/v1/audit", headers=fragile_api.as_("audrey"))

        assert_problem(response, 500, "internal-error")
        for leak in ("audit_events", "SELECT", "sqlite", "asyncpg", "does not exist", "no such"):
            assert leak not in response.text
