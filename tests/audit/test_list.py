"""GET /v1/audit: who may read it, the filters, and keyset pagination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.audit.support import Event, all_events, key_ids
from tests.helpers import Api, assert_problem


async def history(api: Api) -> list[Event]:
    """A small but varied trail: keys, two phrases, versions in several states, a revocation."""
    await api.create_phrase("recording")
    await api.create_phrase("ai-disclosure", title="AI disclosure")
    await api.approved_version("recording")
    await api.approved_version("ai-disclosure", texts={"en-US": "You are talking to an AI."})
    await api.create_version("recording", texts={"en-US": "Recorded, v2."})
    assert (await api.transition("recording", 2, "submit", "alice")).status_code == 200
    reject = await api.transition("recording", 2, "reject", "dave", {"reason": "no"})
    assert reject.status_code == 200
    ids = await key_ids(api)
    revoke = await api.http.delete(f"/v1/api-keys/{ids['carol']}", headers=api.as_("admin"))
    assert revoke.status_code == 200
    return await all_events(api)


async def listed(api: Api, **params: Any) -> list[Event]:
    return await all_events(api, **params)


def seqs(events: list[Event]) -> list[int]:
    return [e["seq"] for e in events]


def at(event: Event) -> datetime:
    return datetime.fromisoformat(event["at"])


class TestAccess:
    @pytest.mark.parametrize("who", ["admin", "alice", "bob", "eve", "agent-1"])
    @pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/verify"])
    async def test_only_auditors_read_the_trail(self, api: Api, who: str, path: str) -> None:
        assert_problem(await api.http.get(path, headers=api.as_(who)), 403, "forbidden")

    @pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/verify"])
    async def test_without_a_key_it_is_401(self, api: Api, path: str) -> None:
        assert_problem(await api.http.get(path), 401, "unauthenticated")
        bad = {"Authorization": "Bearer cms_not-a-key"}
        assert_problem(await api.http.get(path, headers=bad), 401, "unauthenticated")

    async def test_a_revoked_auditor_key_no_longer_reads(self, api: Api) -> None:
        ids = await key_ids(api)
        revoke = await api.http.delete(f"/v1/api-keys/{ids['audrey']}", headers=api.as_("admin"))
        assert revoke.status_code == 200
        assert_problem(await api.http.get("/v1/audit", headers=api.as_("audrey")), 401)

    async def test_an_auditor_can_read_but_not_change_anything(self, api: Api) -> None:
        body = {"key": "x", "title": "t", "category": "other", "default_locale": "en-US"}
        response = await api.http.post("/v1/phrases", json=body, headers=api.as_("audrey"))
        assert_problem(response, 403, "forbidden")
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = await api.http.request(method, "/v1/audit", headers=api.as_("audrey"))
            assert response.status_code == 405, (method, response.text)


class TestFilters:
    async def test_by_action(self, api: Api) -> None:
        events = await history(api)
        approved = await listed(api, action="version.approved")
        assert seqs(approved) == seqs([e for e in events if e["action"] == "version.approved"])
        assert [e["subject_id"] for e in approved] == ["recording/1", "ai-disclosure/1"]
        assert await listed(api, action="version.approve") == []

    async def test_by_subject(self, api: Api) -> None:
        events = await history(api)
        versions = await listed(api, subject_type="phrase_version")
        assert versions
        assert seqs(versions) == seqs([e for e in events if e["subject_type"] == "phrase_version"])
        one = await listed(api, subject_type="phrase_version", subject_id="recording/2")
        assert [e["action"] for e in one] == [
            "version.created",
            "version.submitted",
            "version.rejected",
        ]
        phrase = await listed(api, subject_type="phrase", subject_id="recording")
        assert [e["action"] for e in phrase] == ["phrase.created"]
        # subject ids are matched exactly, not as prefixes
        assert await listed(api, subject_id="recording/") == []

    async def test_by_principal(self, api: Api) -> None:
        events = await history(api)
        for who in ("alice", "bob", "dave", "admin", "system"):
            mine = await listed(api, principal=who)
            assert mine, who
            assert seqs(mine) == seqs([e for e in events if e["principal"] == who])
        assert await listed(api, principal="Alice") == []

    async def test_filters_combine(self, api: Api) -> None:
        events = await history(api)
        result = await listed(
            api, principal="bob", action="version.approved", subject_type="phrase"
        )
        assert result == []
        result = await listed(api, principal="bob", subject_id="ai-disclosure/1")
        assert seqs(result) == [
            e["seq"]
            for e in events
            if e["principal"] == "bob" and e["subject_id"] == "ai-disclosure/1"
        ]
        assert len(result) == 1

    async def test_since_is_inclusive_and_until_is_exclusive(self, api: Api) -> None:
        events = await history(api)
        middle = events[len(events) // 2]
        since = await listed(api, since=middle["at"])
        assert middle["seq"] in seqs(since)
        assert seqs(since) == seqs([e for e in events if at(e) >= at(middle)])
        until = await listed(api, until=middle["at"])
        assert middle["seq"] not in seqs(until)
        assert seqs(until) == seqs([e for e in events if at(e) < at(middle)])
        assert sorted(seqs(since) + seqs(until)) == seqs(events)

    async def test_a_window(self, api: Api) -> None:
        events = await history(api)
        first, last = events[3], events[-3]
        window = await listed(api, since=first["at"], until=last["at"])
        assert seqs(window) == seqs([e for e in events if at(first) <= at(e) < at(last)])
        assert window
        assert await listed(api, since=last["at"], until=first["at"]) == []

    async def test_times_in_another_zone_or_without_one(self, api: Api) -> None:
        events = await history(api)
        middle = at(events[len(events) // 2])
        expected = seqs([e for e in events if at(e) >= middle])
        plus_two = middle.astimezone(timezone(timedelta(hours=2))).isoformat()
        assert seqs(await listed(api, since=plus_two)) == expected
        naive = middle.astimezone(UTC).replace(tzinfo=None).isoformat()  # taken as UTC
        assert seqs(await listed(api, since=naive)) == expected

    async def test_times_far_away(self, api: Api) -> None:
        events = await history(api)
        assert seqs(await listed(api, since="2000-01-01T00:00:00Z")) == seqs(events)
        assert await listed(api, since="2999-01-01T00:00:00Z") == []
        assert await listed(api, until="2000-01-01T00:00:00Z") == []

    async def test_a_bad_time_is_422(self, api: Api) -> None:
        response = await api.http.get(
            "/v1/audit", params={"since": "last tuesday"}, headers=api.as_("audrey")
        )
        assert_problem(response, 422)


class TestPagination:
    @pytest.mark.parametrize("limit", [1, 2, 3, 7])
    async def test_every_event_exactly_once_in_order(self, api: Api, limit: int) -> None:
        events = await history(api)
        pages: list[list[Event]] = []
        params: dict[str, Any] = {"limit": limit}
        while True:
            response = await api.http.get("/v1/audit", params=params, headers=api.as_("audrey"))
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page["items"])
            if page["next_cursor"] is None:
                break
            assert len(page["items"]) == limit
            params["cursor"] = page["next_cursor"]
        assert all(0 < len(p) <= limit for p in pages)
        assert [e for p in pages for e in p] == events
        assert seqs(events) == list(range(1, len(events) + 1))

    async def test_an_exact_multiple_ends_without_an_empty_page(self, api: Api) -> None:
        events = await all_events(api)
        response = await api.http.get(
            "/v1/audit", params={"limit": len(events)}, headers=api.as_("audrey")
        )
        assert response.json()["next_cursor"] is None
        assert response.json()["items"] == events

    async def test_pages_of_a_filtered_list(self, api: Api) -> None:
        events = await history(api)
        wanted = [e for e in events if e["subject_type"] == "phrase_version"]
        assert await all_events(api, limit=2, subject_type="phrase_version") == wanted

    async def test_events_appended_while_paging_appear_on_later_pages(self, api: Api) -> None:
        await api.create_phrase()
        first = await api.http.get("/v1/audit", params={"limit": 2}, headers=api.as_("audrey"))
        cursor = first.json()["next_cursor"]
        await api.create_version()
        rest = await all_events(api, limit=2, cursor=cursor)
        combined = first.json()["items"] + rest
        assert combined == await all_events(api)
        assert combined[-1]["action"] == "version.created"

    @pytest.mark.parametrize("cursor", ["garbage", "", "eyJhIjoxfQ", "InN0ciI"])
    async def test_a_cursor_the_service_did_not_issue_is_refused(
        self, api: Api, cursor: str
    ) -> None:
        response = await api.http.get(
            "/v1/audit", params={"cursor": cursor}, headers=api.as_("audrey")
        )
        if cursor == "":
            # An empty cursor is the same as none: the first page.
            assert response.status_code == 200
            assert response.json()["items"][0]["seq"] == 1
        else:
            assert_problem(response, 422)

    @pytest.mark.parametrize("limit", [0, -1, 501])
    async def test_limit_out_of_range_is_422(self, api: Api, limit: int) -> None:
        response = await api.http.get(
            "/v1/audit", params={"limit": limit}, headers=api.as_("audrey")
        )
        assert_problem(response, 422)
