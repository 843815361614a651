"""Every change appends exactly one audit event in its own transaction; a refused request appends
nothing. Observed the way an auditor would: through GET /v1/audit and GET /v1/audit/verify."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.audit.chain import GENESIS_HASH, verify_chain
from service.settings import Settings
from tests.audit.support import Event, all_events, key_ids, verify
from tests.helpers import ADMIN_KEY, PEOPLE, Api, assert_problem


async def one_new_event(api: Api, request: Awaitable[httpx.Response], status: int) -> Event:
    """Run ``request``; it must answer ``status`` and add exactly one event to the chain."""
    before = await all_events(api)
    started = datetime.now(UTC)
    response = await request
    assert response.status_code == status, response.text
    after = await all_events(api)
    assert after[: len(before)] == before, "existing events changed"
    assert len(after) == len(before) + 1, [e["action"] for e in after[len(before) :]]
    event = after[-1]
    assert event["seq"] == before[-1]["seq"] + 1
    assert event["prev_hash"] == before[-1]["hash"]
    at = datetime.fromisoformat(event["at"])
    assert started - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert (await verify(api))["ok"] is True
    return event


async def nothing_appended(api: Api, request: Awaitable[httpx.Response]) -> httpx.Response:
    before = await all_events(api)
    response = await request
    assert await all_events(api) == before
    result = await verify(api)
    assert result["ok"] is True
    assert result["head_seq"] == before[-1]["seq"]
    return response


def expect(event: Event, **fields: Any) -> None:
    assert {name: event[name] for name in fields} == fields, event


class TestKeysAreRecorded:
    async def test_bootstrap_admin_key_is_the_first_event(self, api: Api) -> None:
        first = (await all_events(api))[0]
        ids = await key_ids(api)
        expect(
            first,
            seq=1,
            prev_hash=GENESIS_HASH,
            principal="system",
            key_id=None,
            action="api_key.created",
            subject_type="api_key",
            subject_id=ids["admin"],
        )
        assert first["details"]["principal"] == "admin"
        assert first["details"]["roles"] == ["admin"]

    async def test_each_key_created_is_recorded_by_the_admin_key_that_made_it(
        self, api: Api
    ) -> None:
        events = await all_events(api)
        ids = await key_ids(api)
        created = [e for e in events if e["action"] == "api_key.created"][1:]
        assert [e["details"]["principal"] for e in created] == list(PEOPLE)
        for event in created:
            who = event["details"]["principal"]
            expect(
                event,
                principal="admin",
                key_id=ids["admin"],
                subject_type="api_key",
                subject_id=ids[who],
            )
            assert event["details"]["roles"] == sorted(PEOPLE[who])

    async def test_no_key_material_reaches_the_trail(self, api: Api) -> None:
        trail = json.dumps(await all_events(api))
        for key in [ADMIN_KEY, *api.keys.values()]:
            assert key not in trail

    async def test_revocation_is_recorded(self, api: Api) -> None:
        ids = await key_ids(api)
        request = api.http.delete(f"/v1/api-keys/{ids['carol']}", headers=api.as_("admin"))
        event = await one_new_event(api, request, 200)
        expect(
            event,
            principal="admin",
            key_id=ids["admin"],
            action="api_key.revoked",
            subject_type="api_key",
            subject_id=ids["carol"],
            details={"principal": "carol"},
        )

    async def test_revoking_twice_appends_nothing_the_second_time(self, api: Api) -> None:
        ids = await key_ids(api)
        first = await api.http.delete(f"/v1/api-keys/{ids['dave']}", headers=api.as_("admin"))
        assert first.status_code == 200
        again = api.http.delete(f"/v1/api-keys/{ids['dave']}", headers=api.as_("admin"))
        assert_problem(await nothing_appended(api, again), 409)

    async def test_revoking_the_last_admin_key_appends_nothing(self, api: Api) -> None:
        ids = await key_ids(api)
        request = api.http.delete(f"/v1/api-keys/{ids['admin']}", headers=api.as_("admin"))
        assert_problem(await nothing_appended(api, request), 409)


class TestPhraseChangesAreRecorded:
    async def test_phrase_creation(self, api: Api) -> None:
        ids = await key_ids(api)
        body = {
            "key": "recording",
            "title": "Call recording disclosure",
            "category": "disclosure",
            "default_locale": "en-US",
            "tags": ["legal"],
        }
        request = api.http.post("/v1/phrases", json=body, headers=api.as_("alice"))
        event = await one_new_event(api, request, 201)
        expect(
            event,
            principal="alice",
            key_id=ids["alice"],
            action="phrase.created",
            subject_type="phrase",
            subject_id="recording",
        )
        assert event["details"]["title"] == "Call recording disclosure"
        assert event["details"]["tags"] == ["legal"]

    async def test_phrase_update(self, api: Api) -> None:
        await api.create_phrase()
        ids = await key_ids(api)
        request = api.http.patch(
            "/v1/phrases/recording", json={"title": "New title"}, headers=api.as_("carol")
        )
        event = await one_new_event(api, request, 200)
        expect(
            event,
            principal="carol",
            key_id=ids["carol"],
            action="phrase.updated",
            subject_type="phrase",
            subject_id="recording",
            details={"title": "New title"},
        )

    async def test_version_creation_records_the_text_hashes(self, api: Api) -> None:
        await api.create_phrase()
        ids = await key_ids(api)
        texts = {"en-US": "This call is recorded.", "de-DE": "Dieser Anruf wird aufgezeichnet."}
        request = api.http.post(
            "/v1/phrases/recording/versions", json={"texts": texts}, headers=api.as_("carol")
        )
        event = await one_new_event(api, request, 201)
        expect(
            event,
            principal="carol",
            key_id=ids["carol"],
            action="version.created",
            subject_type="phrase_version",
            subject_id="recording/1",
        )
        assert event["details"]["texts"] == texts
        version = await api.http.get("/v1/phrases/recording/versions/1", headers=api.as_("bob"))
        assert event["details"]["sha256"] == version.json()["sha256"]

    async def test_version_update(self, api: Api) -> None:
        await api.create_phrase()
        draft = await api.create_version()
        ids = await key_ids(api)
        request = api.http.patch(
            "/v1/phrases/recording/versions/1",
            json={"texts": {"en-US": "This call is recorded for quality."}},
            headers={**api.as_("carol"), "If-Match": draft["etag"]},
        )
        event = await one_new_event(api, request, 200)
        expect(
            event,
            principal="carol",
            key_id=ids["carol"],
            action="version.updated",
            subject_type="phrase_version",
            subject_id="recording/1",
        )
        assert event["details"]["texts"] == {"en-US": "This call is recorded for quality."}
        assert set(event["details"]["sha256"]) == {"en-US"}

    async def test_submit_approve_retire(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        ids = await key_ids(api)

        submitted = await one_new_event(api, api.transition("recording", 1, "submit", "alice"), 200)
        expect(
            submitted,
            principal="alice",
            key_id=ids["alice"],
            action="version.submitted",
            subject_type="phrase_version",
            subject_id="recording/1",
        )

        approve = api.transition("recording", 1, "approve", "bob", {"comment": "Legal OK"})
        approved = await one_new_event(api, approve, 200)
        expect(
            approved,
            principal="bob",
            key_id=ids["bob"],
            action="version.approved",
            subject_type="phrase_version",
            subject_id="recording/1",
        )
        assert approved["details"]["comment"] == "Legal OK"

        retire = api.transition("recording", 1, "retire", "dave", {"reason": "Superseded"})
        retired = await one_new_event(api, retire, 200)
        expect(
            retired,
            principal="dave",
            key_id=ids["dave"],
            action="version.retired",
            subject_type="phrase_version",
            subject_id="recording/1",
            details={"reason": "Superseded"},
        )

    async def test_reject(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200
        ids = await key_ids(api)
        reject = api.transition("recording", 1, "reject", "dave", {"reason": "Wrong tone"})
        event = await one_new_event(api, reject, 200)
        expect(
            event,
            principal="dave",
            key_id=ids["dave"],
            action="version.rejected",
            subject_type="phrase_version",
            subject_id="recording/1",
            details={"reason": "Wrong tone"},
        )

    async def test_import_records_each_phrase_and_draft(self, api: Api) -> None:
        doc = {
            "format": "compliance-phrases/1",
            "phrases": [
                {
                    "key": key,
                    "title": key,
                    "category": "disclosure",
                    "default_locale": "en-US",
                    "versions": [{"texts": {"en-US": f"Text of {key}."}}],
                }
                for key in ("a-one", "b-two")
            ],
        }
        before = await all_events(api)
        response = await api.http.post("/v1/phrases/import", json=doc, headers=api.as_("carol"))
        assert response.status_code == 200, response.text
        added = (await all_events(api))[len(before) :]
        assert [(e["action"], e["subject_id"]) for e in added] == [
            ("phrase.created", "a-one"),
            ("version.created", "a-one/1"),
            ("phrase.created", "b-two"),
            ("version.created", "b-two/1"),
        ]
        assert {e["principal"] for e in added} == {"carol"}
        assert (await verify(api))["ok"] is True


class TestRefusedRequestsAppendNothing:
    async def test_illegal_transition(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        response = await nothing_appended(api, api.transition("recording", 1, "approve", "bob"))
        assert_problem(response, 409)

    async def test_self_approval(self, api: Api) -> None:
        await api.create_phrase()
        draft = await api.http.post(
            "/v1/phrases/recording/versions",
            json={"texts": {"en-US": "Eve wrote this."}},
            headers=api.as_("eve"),
        )
        assert draft.status_code == 201
        assert (await api.transition("recording", 1, "submit", "eve")).status_code == 200
        response = await nothing_appended(api, api.transition("recording", 1, "approve", "eve"))
        assert_problem(response, 403)

    async def test_approval_by_a_co_editor(self, api: Api) -> None:
        await api.create_phrase()
        draft = await api.create_version()
        edit = await api.http.patch(
            "/v1/phrases/recording/versions/1",
            json={"change_note": "eve touched it"},
            headers={**api.as_("eve"), "If-Match": draft["etag"]},
        )
        assert edit.status_code == 200, edit.text
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200
        response = await nothing_appended(api, api.transition("recording", 1, "approve", "eve"))
        assert_problem(response, 403)

    async def test_missing_role(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200
        response = await nothing_appended(api, api.transition("recording", 1, "approve", "carol"))
        assert_problem(response, 403)

    async def test_stale_and_missing_if_match(self, api: Api) -> None:
        await api.create_phrase()
        draft = await api.create_version()
        first = await api.http.patch(
            "/v1/phrases/recording/versions/1",
            json={"change_note": "first"},
            headers={**api.as_("alice"), "If-Match": draft["etag"]},
        )
        assert first.status_code == 200
        stale = api.http.patch(
            "/v1/phrases/recording/versions/1",
            json={"change_note": "second"},
            headers={**api.as_("alice"), "If-Match": draft["etag"]},
        )
        assert_problem(await nothing_appended(api, stale), 412)
        missing = api.http.patch(
            "/v1/phrases/recording/versions/1",
            json={"change_note": "third"},
            headers=api.as_("alice"),
        )
        assert_problem(await nothing_appended(api, missing), 428)

    async def test_duplicate_phrase(self, api: Api) -> None:
        await api.create_phrase()
        body = {"key": "recording", "title": "t", "category": "other", "default_locale": "en-US"}
        request = api.http.post("/v1/phrases", json=body, headers=api.as_("carol"))
        assert_problem(await nothing_appended(api, request), 409)

    async def test_invalid_version(self, api: Api) -> None:
        await api.create_phrase()
        request = api.http.post(
            "/v1/phrases/recording/versions",
            json={"texts": {"fr-FR": "Pas de texte anglais."}},
            headers=api.as_("alice"),
        )
        assert_problem(await nothing_appended(api, request), 422)

    async def test_an_import_that_fails_half_way_leaves_no_event_and_no_gap(self, api: Api) -> None:
        good = {
            "key": "a-good",
            "title": "good",
            "category": "other",
            "default_locale": "en-US",
            "versions": [{"texts": {"en-US": "Fine."}}],
        }
        bad = {**good, "key": "b-bad", "versions": [{"texts": {"fr-FR": "No default locale."}}]}
        doc = {"format": "compliance-phrases/1", "phrases": [good, bad]}
        request = api.http.post("/v1/phrases/import", json=doc, headers=api.as_("carol"))
        assert_problem(await nothing_appended(api, request), 422)
        missing = await api.http.get("/v1/phrases/a-good", headers=api.as_("carol"))
        assert missing.status_code == 404
        # The sequence numbers the rolled-back events had taken are free again: no gap appears.
        phrase = {k: v for k, v in good.items() if k != "versions"}
        create = api.http.post("/v1/phrases", json=phrase, headers=api.as_("carol"))
        event = await one_new_event(api, create, 201)
        assert event["subject_id"] == "a-good"

    async def test_unauthenticated(self, api: Api) -> None:
        body = {"key": "x", "title": "t", "category": "other", "default_locale": "en-US"}
        request = api.http.post("/v1/phrases", json=body, headers={"Authorization": "Bearer no"})
        assert_problem(await nothing_appended(api, request), 401)


class TestReadsAppendNothing:
    async def test_reading_and_verifying_leave_the_chain_alone(self, api: Api) -> None:
        await api.create_phrase()
        await api.approved_version()
        before = await all_events(api)
        for path in (
            "/v1/phrases",
            "/v1/phrases/recording",
            "/v1/phrases/recording/versions",
            "/v1/phrases/recording/resolve",
            "/v1/phrases/export",
        ):
            response = await api.http.get(path, headers=api.as_("agent-1"))
            assert response.status_code == 200, (path, response.text)
        await verify(api)
        assert await all_events(api) == before


class TestTheTrailAsServed:
    async def test_events_from_the_api_verify_offline_with_the_same_code(self, api: Api) -> None:
        """An auditor can take GET /v1/audit output and recompute every hash themselves."""
        await api.create_phrase(description='Ünïcödé and "quotes" and emoji \N{STUDIO MICROPHONE}')
        await api.approved_version(
            texts={"en-US": "Recorded.", "ja-JP": "この通話は録音されます。"}
        )
        events = await all_events(api)
        result = verify_chain(events)
        assert result.ok is True, result
        assert result.head_hash == events[-1]["hash"]
        served = await verify(api)
        assert (served["checked"], served["head_seq"], served["head_hash"]) == (
            len(events),
            events[-1]["seq"],
            events[-1]["hash"],
        )


class TestApprovalsRequiredTwo:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"approvals_required": 2})

    async def test_first_approval_is_recorded_as_such_and_the_second_approves(
        self, api: Api
    ) -> None:
        await api.create_phrase()
        await api.create_version()
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200
        first = await one_new_event(api, api.transition("recording", 1, "approve", "bob"), 200)
        expect(
            first,
            principal="bob",
            action="version.approval_recorded",
            subject_id="recording/1",
        )
        assert first["details"]["approvals"] == 1
        assert first["details"]["approvals_required"] == 2
        again = await nothing_appended(api, api.transition("recording", 1, "approve", "bob"))
        assert_problem(again, 409)
        second = await one_new_event(api, api.transition("recording", 1, "approve", "dave"), 200)
        expect(second, principal="dave", action="version.approved", subject_id="recording/1")
        assert second["details"]["approvals"] == 2
