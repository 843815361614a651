"""Four eyes: nobody approves what they wrote; N distinct approvals when configured."""

from __future__ import annotations

import asyncio

from tests.helpers import Api, assert_problem
from tests.phrases.support import (
    create_version_as,
    get_version,
    patch_current,
    resolve,
    submitted_version,
)


class TestFourEyes:
    async def test_approver_cannot_approve_own_draft(self, api: Api) -> None:
        await api.create_phrase()
        number = (await create_version_as(api, "eve"))["number"]
        assert (await api.transition("recording", number, "submit", "eve")).status_code == 200

        problem = assert_problem(
            await api.transition("recording", number, "approve", "eve"), 403, "four-eyes"
        )
        assert "eve" in problem["detail"]
        version = (await get_version(api, "recording", number)).json()
        assert version["status"] == "in_review"
        assert version["approvals"] == []
        assert_problem(await resolve(api), 404, "no-version-in-force")

    async def test_author_cannot_approve_with_a_second_key(self, api: Api) -> None:
        api.keys["alice-approver"] = await api.new_key("alice", ["editor", "approver"])
        await api.create_phrase()
        number = (await submitted_version(api))["number"]  # written by alice's editor key

        response = await api.transition("recording", number, "approve", "alice-approver")
        assert_problem(response, 403, "four-eyes")
        assert (await get_version(api, "recording", number)).json()["status"] == "in_review"

    async def test_principal_who_edited_someone_elses_draft_cannot_approve_it(
        self, api: Api
    ) -> None:
        await api.create_phrase()
        number = (await api.create_version())["number"]
        edited = await patch_current(
            api, "recording", number, {"texts": {"en-US": "Eve's words."}}, who="eve"
        )
        assert edited.status_code == 200, edited.text
        assert (await api.transition("recording", number, "submit", "alice")).status_code == 200

        assert_problem(
            await api.transition("recording", number, "approve", "eve"), 403, "four-eyes"
        )
        approved = await api.transition("recording", number, "approve", "bob")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "approved"

    async def test_submitting_is_not_writing(self, api: Api) -> None:
        await api.create_phrase()
        number = (await api.create_version())["number"]
        assert (await api.transition("recording", number, "submit", "eve")).status_code == 200
        approved = await api.transition("recording", number, "approve", "eve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["approvals"][0]["principal"] == "eve"

    async def test_author_may_reject_own_version_in_review(self, api: Api) -> None:
        await api.create_phrase()
        number = (await create_version_as(api, "eve"))["number"]
        assert (await api.transition("recording", number, "submit", "eve")).status_code == 200
        rejected = await api.transition("recording", number, "reject", "eve", {"reason": "typo"})
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"


class TestTwoApprovalsRequired:
    async def test_version_needs_two_distinct_approvals(self, two_approvals_api: Api) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await submitted_version(api))["number"]

        first = await api.transition("recording", number, "approve", "bob", {"comment": "ok"})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["status"] == "in_review"
        assert body["approvals_required"] == 2
        assert [a["principal"] for a in body["approvals"]] == ["bob"]
        assert body["approved_at"] is None
        assert_problem(await resolve(api), 404, "no-version-in-force")

        second = await api.transition("recording", number, "approve", "dave")
        assert second.status_code == 200, second.text
        body = second.json()
        assert body["status"] == "approved"
        assert [a["principal"] for a in body["approvals"]] == ["bob", "dave"]
        assert body["approved_at"] is not None
        resolved = await resolve(api)
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["version"] == number

    async def test_same_approver_twice_is_409_and_counts_once(self, two_approvals_api: Api) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await submitted_version(api))["number"]
        assert (await api.transition("recording", number, "approve", "bob")).status_code == 200

        problem = assert_problem(
            await api.transition("recording", number, "approve", "bob"), 409, "already-approved"
        )
        assert "bob" in problem["detail"]

        api.keys["bob-again"] = await api.new_key("bob", ["approver"])
        again = await api.transition("recording", number, "approve", "bob-again")
        assert_problem(again, 409, "already-approved")

        version = (await get_version(api, "recording", number)).json()
        assert version["status"] == "in_review"
        assert [a["principal"] for a in version["approvals"]] == ["bob"]

    async def test_double_clicked_approval_counts_once(self, two_approvals_api: Api) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await submitted_version(api))["number"]
        responses = await asyncio.gather(
            api.transition("recording", number, "approve", "bob"),
            api.transition("recording", number, "approve", "bob"),
        )
        assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
        version = (await get_version(api, "recording", number)).json()
        assert (version["status"], len(version["approvals"])) == ("in_review", 1)

    async def test_approvals_arriving_together_both_count(self, two_approvals_api: Api) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await submitted_version(api))["number"]
        responses = await asyncio.gather(
            api.transition("recording", number, "approve", "bob"),
            api.transition("recording", number, "approve", "dave"),
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        version = (await get_version(api, "recording", number)).json()
        assert version["status"] == "approved"
        assert sorted(a["principal"] for a in version["approvals"]) == ["bob", "dave"]

    async def test_author_still_cannot_be_one_of_the_approvers(
        self, two_approvals_api: Api
    ) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await create_version_as(api, "eve"))["number"]
        assert (await api.transition("recording", number, "submit", "eve")).status_code == 200
        assert (await api.transition("recording", number, "approve", "bob")).status_code == 200

        assert_problem(
            await api.transition("recording", number, "approve", "eve"), 403, "four-eyes"
        )
        version = (await get_version(api, "recording", number)).json()
        assert version["status"] == "in_review"
        assert len(version["approvals"]) == 1

    async def test_rejection_after_one_approval_ends_the_review(
        self, two_approvals_api: Api
    ) -> None:
        api = two_approvals_api
        await api.create_phrase()
        number = (await submitted_version(api))["number"]
        assert (await api.transition("recording", number, "approve", "bob")).status_code == 200
        rejected = await api.transition("recording", number, "reject", "dave", {"reason": "no"})
        assert rejected.status_code == 200, rejected.text
        late = await api.transition("recording", number, "approve", "eve")
        assert_problem(late, 409, "illegal-transition")
