"""Many requests at once still leave one consistent chain.

The requests go through one httpx client into the ASGI app concurrently: on PostgreSQL each holds
its own connection and they really overlap (row locks and the chain's advisory lock decide); on
SQLite they queue for the one writer. Either way: no 500s, seq 1..N without gaps or duplicates,
every link verifies, every version approved exactly once, one event per successful change.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import httpx
import pytest

from service.audit.chain import verify_chain
from service.settings import Settings
from tests.audit.support import Event, all_events, verify
from tests.helpers import Api, assert_problem


async def submitted(api: Api, key: str, author: str = "alice") -> None:
    await api.http.post(
        "/v1/phrases",
        json={"key": key, "title": key, "category": "disclosure", "default_locale": "en-US"},
        headers=api.as_(author),
    )
    response = await api.http.post(
        f"/v1/phrases/{key}/versions",
        json={"texts": {"en-US": f"Approved wording of {key}."}},
        headers=api.as_(author),
    )
    assert response.status_code == 201, response.text
    assert (await api.transition(key, 1, "submit", author)).status_code == 200


async def at_once(requests: list[Awaitable[httpx.Response]]) -> list[httpx.Response]:
    responses = await asyncio.gather(*requests)
    errors = [r for r in responses if r.status_code >= 500]
    assert not errors, [(r.status_code, r.text) for r in errors]
    return list(responses)


async def consistent_chain(api: Api) -> list[Event]:
    events = await all_events(api)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["hash"] for e in events}) == len(events)
    times = [datetime.fromisoformat(e["at"]) for e in events]
    assert times == sorted(times), "times go backwards along the chain"
    assert verify_chain(events).ok
    result = await verify(api)
    assert result["ok"] is True, result
    assert result["checked"] == result["head_seq"] == len(events)
    assert result["head_hash"] == events[-1]["hash"]
    return events


def count(events: list[Event], action: str) -> Counter[str]:
    return Counter(e["subject_id"] for e in events if e["action"] == action)


class TestConcurrentApprovals:
    async def test_different_versions_by_different_approvers(self, api: Api) -> None:
        keys = [f"phrase-{i:02d}" for i in range(24)]
        for key in keys:
            await submitted(api, key)
        before = len(await all_events(api))
        approvers = ["bob", "dave", "eve"]
        responses = await at_once(
            [
                api.transition(key, 1, "approve", approvers[i % 3], {"comment": key})
                for i, key in enumerate(keys)
            ]
        )
        assert [r.status_code for r in responses] == [200] * len(keys)
        events = await consistent_chain(api)
        assert len(events) == before + len(keys)
        approved = [e for e in events if e["action"] == "version.approved"]
        assert Counter(e["subject_id"] for e in approved) == Counter(f"{k}/1" for k in keys)
        by_subject = {e["subject_id"]: e for e in approved}
        for i, key in enumerate(keys):
            assert by_subject[f"{key}/1"]["principal"] == approvers[i % 3]
            assert by_subject[f"{key}/1"]["details"]["comment"] == key

    async def test_the_same_version_by_several_approvers_is_approved_once(self, api: Api) -> None:
        keys = [f"phrase-{i:02d}" for i in range(12)]
        for key in keys:
            await submitted(api, key)
        before = len(await all_events(api))
        calls = [(key, who) for key in keys for who in ("bob", "dave", "eve")]
        responses = await at_once([api.transition(k, 1, "approve", who) for k, who in calls])

        winners: dict[str, str] = {}
        for (key, who), response in zip(calls, responses, strict=True):
            if response.status_code == 200:
                assert key not in winners, f"{key} approved twice"
                winners[key] = who
                assert response.json()["status"] == "approved"
                assert [a["principal"] for a in response.json()["approvals"]] == [who]
            else:
                assert_problem(response, 409, "illegal-transition")
        assert set(winners) == set(keys)

        events = await consistent_chain(api)
        assert len(events) == before + len(keys)  # the losers appended nothing
        approved = [e for e in events if e["action"] == "version.approved"]
        assert {e["subject_id"]: e["principal"] for e in approved} == {
            f"{k}/1": who for k, who in winners.items()
        }
        assert count(events, "version.approved") == Counter(f"{k}/1" for k in keys)
        for key in keys:
            version = await api.http.get(f"/v1/phrases/{key}/versions/1", headers=api.as_("bob"))
            assert [a["principal"] for a in version.json()["approvals"]] == [winners[key]]


class TestConcurrentApprovalsWithTwoRequired:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"approvals_required": 2})

    async def test_three_approvers_at_once_give_one_record_and_one_approval(self, api: Api) -> None:
        keys = [f"phrase-{i:02d}" for i in range(10)]
        for key in keys:
            await submitted(api, key)
        calls = [(key, who) for key in keys for who in ("bob", "dave", "eve")]
        calls += [(key, "bob") for key in keys]  # and bob twice
        responses = await at_once([api.transition(k, 1, "approve", who) for k, who in calls])
        statuses: dict[str, list[int]] = {}
        for (key, _), response in zip(calls, responses, strict=True):
            statuses.setdefault(key, []).append(response.status_code)
            if response.status_code != 200:
                assert_problem(response, 409)
        for key in keys:
            assert sorted(statuses[key]) == [200, 200, 409, 409], key

        events = await consistent_chain(api)
        assert count(events, "version.approval_recorded") == Counter(f"{k}/1" for k in keys)
        assert count(events, "version.approved") == Counter(f"{k}/1" for k in keys)
        for key in keys:
            mine = [e for e in events if e["subject_id"] == f"{key}/1"]
            recorded, approved = mine[-2:]
            assert recorded["action"] == "version.approval_recorded"
            assert approved["action"] == "version.approved"
            assert recorded["principal"] != approved["principal"]
            version = await api.http.get(f"/v1/phrases/{key}/versions/1", headers=api.as_("bob"))
            assert version.json()["status"] == "approved"
            principals = [a["principal"] for a in version.json()["approvals"]]
            assert principals == [recorded["principal"], approved["principal"]]


class TestConcurrentEdits:
    async def test_patches_with_the_same_etag_one_wins_per_draft(self, api: Api) -> None:
        etags: dict[str, str] = {}
        for i in range(10):
            key = f"draft-{i:02d}"
            await api.create_phrase(key)
            etags[key] = (await api.create_version(key))["etag"]
        before = len(await all_events(api))
        calls = [(key, who) for key in etags for who in ("alice", "carol", "eve")]
        responses = await at_once(
            [
                api.http.patch(
                    f"/v1/phrases/{key}/versions/1",
                    json={"texts": {"en-US": f"{who} says {key}."}},
                    headers={**api.as_(who), "If-Match": etags[key]},
                )
                for key, who in calls
            ]
        )
        winners: dict[str, str] = {}
        for (key, who), response in zip(calls, responses, strict=True):
            if response.status_code == 200:
                assert key not in winners
                winners[key] = who
            else:
                assert_problem(response, 412, "precondition-failed")
        assert set(winners) == set(etags)
        events = await consistent_chain(api)
        assert len(events) == before + len(etags)
        updated = [e for e in events if e["action"] == "version.updated"]
        assert {e["subject_id"]: e["principal"] for e in updated} == {
            f"{k}/1": who for k, who in winners.items()
        }
        for key, who in winners.items():
            version = await api.http.get(f"/v1/phrases/{key}/versions/1", headers=api.as_("bob"))
            assert version.json()["texts"] == {"en-US": f"{who} says {key}."}

    async def test_unconditional_patches_all_apply_in_some_order(self, api: Api) -> None:
        await api.create_phrase()
        await api.create_version()
        before = len(await all_events(api))
        notes = [f"note {i}" for i in range(25)]
        responses = await at_once(
            [
                api.http.patch(
                    "/v1/phrases/recording/versions/1",
                    json={"change_note": note},
                    headers={**api.as_("alice"), "If-Match": "*"},
                )
                for note in notes
            ]
        )
        assert [r.status_code for r in responses] == [200] * len(notes)
        # Each PATCH saw the one before it: every ETag distinct, the last one is the stored one.
        assert len({r.headers["ETag"] for r in responses}) == len(notes)
        events = await consistent_chain(api)
        updates = events[before:]
        assert len(updates) == len(notes)
        assert sorted(e["details"]["change_note"] for e in updates) == sorted(notes)
        current = await api.http.get("/v1/phrases/recording/versions/1", headers=api.as_("bob"))
        assert current.headers["ETag"] == f'"v1.r{1 + len(notes)}"'
        assert current.json()["change_note"] == updates[-1]["details"]["change_note"]


class TestAStormOfEverything:
    async def test_mixed_changes_leave_one_chain(self, api: Api) -> None:
        approvals = [f"approve-{i}" for i in range(10)]
        for key in approvals:
            await submitted(api, key)
        drafts: dict[str, str] = {}
        for i in range(5):
            key = f"draft-{i}"
            await api.create_phrase(key)
            drafts[key] = (await api.create_version(key))["etag"]
        await api.create_phrase("busy")
        before = await all_events(api)

        kinds: list[str] = []
        requests: list[Awaitable[httpx.Response]] = []

        def add(kind: str, method: str, url: str, who: str, **kwargs: Any) -> None:
            headers = {**api.as_(who), **kwargs.pop("headers", {})}
            kinds.append(kind)
            requests.append(api.http.request(method, url, headers=headers, **kwargs))

        for key in approvals:
            for who in ("bob", "dave"):
                add("approve", "POST", f"/v1/phrases/{key}/versions/1/approve", who)
        for key, etag in drafts.items():
            for who in ("alice", "carol"):
                url = f"/v1/phrases/{key}/versions/1"
                add(
                    "patch",
                    "PATCH",
                    url,
                    who,
                    json={"change_note": who},
                    headers={"If-Match": etag},
                )
        body: dict[str, Any]
        for i in range(5):
            body = {"texts": {"en-US": f"Busy wording {i}."}}
            add("version", "POST", "/v1/phrases/busy/versions", "carol", json=body)
        for title in ("first", "second"):
            body = {"key": "dup", "title": title, "category": "other", "default_locale": "en-US"}
            add("phrase", "POST", "/v1/phrases", "alice", json=body)
        for i in range(3):
            body = {"principal": f"new-{i}", "roles": ["agent"]}
            add("key", "POST", "/v1/api-keys", "admin", json=body)
        for _ in range(3):
            add("read", "GET", "/v1/audit/verify", "audrey")

        responses = await at_once(requests)
        assert len(responses) >= 40
        ok = Counter(k for k, r in zip(kinds, responses, strict=True) if r.status_code < 300)
        assert ok == Counter(
            approve=len(approvals), patch=len(drafts), version=5, phrase=1, key=3, read=3
        )
        for kind, response in zip(kinds, responses, strict=True):
            if response.status_code >= 300:
                assert_problem(response, {"approve": 409, "patch": 412, "phrase": 409}[kind])
            if kind == "read":
                assert response.json()["ok"] is True

        events = await consistent_chain(api)
        assert events[: len(before)] == before
        added = events[len(before) :]
        assert len(added) == sum(ok.values()) - ok["read"]
        assert count(added, "version.approved") == Counter(f"{k}/1" for k in approvals)
        assert count(added, "version.updated") == Counter(f"{k}/1" for k in drafts)
        assert count(added, "version.created") == Counter(f"busy/{n}" for n in range(1, 6))
        assert count(added, "phrase.created") == Counter(["dup"])
        assert len([e for e in added if e["action"] == "api_key.created"]) == 3


def library(keys: list[str], wording: str) -> dict[str, Any]:
    return {
        "format": "compliance-phrases/1",
        "phrases": [
            {
                "key": key,
                "title": key,
                "category": "other",
                "default_locale": "en-US",
                "versions": [{"texts": {"en-US": f"{key}: {wording}."}}],
            }
            for key in keys
        ],
    }


class TestConcurrentImports:
    @pytest.mark.parametrize("round_", range(3))
    async def test_imports_racing_edits_of_the_same_phrases(self, api: Api, round_: int) -> None:
        """An import appends many events and locks phrase rows as it goes; edits of those phrases
        running at the same time hold a phrase row and wait for the chain. Neither may deadlock.
        """
        existing = [f"existing-{i}" for i in range(4)]
        for key in existing:
            await api.create_phrase(key)
        before = len(await all_events(api))
        kinds: list[str] = []
        requests: list[Awaitable[httpx.Response]] = []
        for j in range(4):
            # a new phrase first, so the import has appended before it reaches the existing ones
            doc = library([f"new-{round_}-{j}", *existing], f"import {j}")
            kinds.append("import")
            requests.append(api.http.post("/v1/phrases/import", json=doc, headers=api.as_("carol")))
        for key in existing:
            body = {"texts": {"en-US": f"{key}: direct."}}
            kinds.append("version")
            requests.append(
                api.http.post(f"/v1/phrases/{key}/versions", json=body, headers=api.as_("alice"))
            )
            kinds.append("phrase")
            requests.append(
                api.http.patch(f"/v1/phrases/{key}", json={"title": "T"}, headers=api.as_("alice"))
            )

        responses = await at_once(requests)
        assert [r.status_code for r in responses] == [
            {"import": 200, "version": 201, "phrase": 200}[k] for k in kinds
        ], [r.text for r in responses if r.status_code >= 300]
        reports = [r.json() for k, r in zip(kinds, responses, strict=True) if k == "import"]
        drafts = sum(len(r["drafts_created"]) for r in reports)
        created = sum(len(r["phrases_created"]) for r in reports)
        assert created == 4

        events = await consistent_chain(api)
        added = events[before:]
        assert len(added) == created + drafts + 2 * len(existing)
        for key in existing:
            numbers = [
                int(e["subject_id"].rsplit("/", 1)[1])
                for e in added
                if e["action"] == "version.created" and e["subject_id"].startswith(f"{key}/")
            ]
            assert sorted(numbers) == list(range(1, len(numbers) + 1))
            listed = await api.http.get(f"/v1/phrases/{key}/versions", headers=api.as_("bob"))
            assert [v["number"] for v in listed.json()["items"]] == sorted(numbers)
        # An import's events stay together and in the order of its document.
        for report in reports:
            mine = [e for e in added if e["principal"] == "carol"]
            new_key = report["phrases_created"][0]
            first = next(i for i, e in enumerate(mine) if e["subject_id"] == new_key)
            chunk = mine[first : first + 1 + len(report["drafts_created"])]
            assert [e["subject_id"] for e in chunk] == [
                new_key,
                *[f"{d['key']}/{d['number']}" for d in report["drafts_created"]],
            ]
            assert [e["seq"] for e in chunk] == list(range(chunk[0]["seq"], chunk[-1]["seq"] + 1))
