"""The version lifecycle: the transition table, and the same rules over HTTP."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from service.phrases.lifecycle import Action, Status, illegal_reason
from tests.helpers import Api, assert_problem
from tests.phrases.support import (
    assert_refused,
    etag,
    get_version,
    patch,
    submitted_version,
    version_url,
)

ALLOWED = {
    (Status.DRAFT, Action.EDIT),
    (Status.DRAFT, Action.SUBMIT),
    (Status.IN_REVIEW, Action.APPROVE),
    (Status.IN_REVIEW, Action.REJECT),
    (Status.APPROVED, Action.RETIRE),
}
ILLEGAL = sorted(set(itertools.product(Status, Action)) - ALLOWED)


class TestIllegalReason:
    @pytest.mark.parametrize(("status", "action"), sorted(ALLOWED))
    def test_allowed_transition_has_no_reason(self, status: Status, action: Action) -> None:
        assert illegal_reason(status, action) is None

    @pytest.mark.parametrize(("status", "action"), ILLEGAL)
    def test_illegal_transition_says_why(self, status: Status, action: Action) -> None:
        reason = illegal_reason(status, action)
        assert reason is not None
        assert status.value in reason

    def test_reason_names_the_status_the_action_needs(self) -> None:
        assert illegal_reason(Status.DRAFT, Action.APPROVE) == (
            "cannot approve a version that is draft (only when in_review)"
        )

    @pytest.mark.parametrize("status", [Status.APPROVED, Status.REJECTED, Status.RETIRED])
    def test_finished_version_can_never_be_edited(self, status: Status) -> None:
        reason = illegal_reason(status, Action.EDIT)
        assert reason is not None
        assert "can never change" in reason


async def version_in(api: Api, status: Status, key: str = "recording") -> int:
    """A version of ``key`` in ``status``, written by alice and judged by bob."""
    if status is Status.DRAFT:
        number: int = (await api.create_version(key))["number"]
        return number
    if status is Status.APPROVED or status is Status.RETIRED:
        number = (await api.approved_version(key))["number"]
        if status is Status.RETIRED:
            retired = await api.transition(key, number, "retire", "bob", {"reason": "replaced"})
            assert retired.status_code == 200, retired.text
        return number
    number = (await submitted_version(api, key))["number"]
    if status is Status.REJECTED:
        rejected = await api.transition(key, number, "reject", "bob", {"reason": "too long"})
        assert rejected.status_code == 200, rejected.text
    return number


async def attempt(api: Api, number: int, action: Action) -> httpx.Response:
    """``action`` by someone the roles and four-eyes rules allow, so only the status can stop it."""
    if action is Action.EDIT:
        current = await etag(api, "recording", number)
        edit = {"texts": {"en-US": "Changed."}}
        return await patch(api, "recording", number, edit, who="carol", if_match=current)
    who = "carol" if action is Action.SUBMIT else "dave"
    body = {"reason": "because"} if action in (Action.REJECT, Action.RETIRE) else None
    return await api.transition("recording", number, action.value, who, body)


class TestTransitions:
    async def test_draft_is_submitted_then_approved(self, api: Api) -> None:
        await api.create_phrase()
        draft = await api.create_version()
        assert draft["status"] == "draft"
        assert draft["submitted_at"] is None

        submitted = await api.transition("recording", draft["number"], "submit", "carol")
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["status"] == "in_review"
        assert submitted.json()["submitted_by"] == "carol"
        assert submitted.json()["submitted_at"] is not None

        approved = await api.transition(
            "recording", draft["number"], "approve", "bob", {"comment": "fine"}
        )
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["status"] == "approved"
        assert body["approved_at"] is not None
        assert [(a["principal"], a["comment"]) for a in body["approvals"]] == [("bob", "fine")]
        assert approved.headers["ETag"] == body["etag"]

    async def test_version_in_review_is_rejected_with_its_reason(self, api: Api) -> None:
        await api.create_phrase()
        number = (await submitted_version(api))["number"]
        rejected = await api.transition(
            "recording", number, "reject", "bob", {"reason": "Say 'recorded', not 'taped'."}
        )
        assert rejected.status_code == 200, rejected.text
        body = (await get_version(api, "recording", number)).json()
        assert body["status"] == "rejected"
        assert body["rejected_by"] == "bob"
        assert body["rejection_reason"] == "Say 'recorded', not 'taped'."
        assert body["rejected_at"] is not None
        assert body["approvals"] == []

    async def test_approved_version_is_retired_with_its_reason(self, api: Api) -> None:
        await api.create_phrase()
        number = (await api.approved_version())["number"]
        retired = await api.transition("recording", number, "retire", "dave", {"reason": "new law"})
        assert retired.status_code == 200, retired.text
        body = (await get_version(api, "recording", number)).json()
        assert body["status"] == "retired"
        assert body["retired_by"] == "dave"
        assert body["retirement_reason"] == "new law"
        assert body["approved_at"] is not None

    async def test_rejection_and_retirement_need_a_reason(self, api: Api) -> None:
        await api.create_phrase()
        in_review = await version_in(api, Status.IN_REVIEW)
        approved = await version_in(api, Status.APPROVED)
        for action, number, status in (
            ("reject", in_review, "in_review"),
            ("retire", approved, "approved"),
        ):
            for body in (None, {}, {"reason": ""}):
                response = await api.transition("recording", number, action, "bob", body)
                assert_refused(response, 422, "validation-error", (action, body))
            assert (await get_version(api, "recording", number)).json()["status"] == status

    async def test_new_version_of_a_phrase_gets_the_next_number(self, api: Api) -> None:
        await api.create_phrase()
        first = await api.approved_version()
        second = await api.create_version(texts={"en-US": "This call is recorded. Again."})
        assert (first["number"], second["number"]) == (1, 2)
        assert second["status"] == "draft"
        assert (await get_version(api, "recording", 1)).json()["status"] == "approved"


class TestIllegalTransitions:
    async def test_every_illegal_transition_is_a_409_with_a_reason(self, api: Api) -> None:
        await api.create_phrase()
        numbers = {status: await version_in(api, status) for status in Status}
        for status, action in ILLEGAL:
            number = numbers[status]
            before = (await get_version(api, "recording", number)).json()

            response = await attempt(api, number, action)

            problem = assert_refused(response, 409, "illegal-transition", (status, action))
            assert problem["detail"] == illegal_reason(status, action)
            after = (await get_version(api, "recording", number)).json()
            assert after == before, (status, action)

    async def test_unknown_version_or_phrase_is_404(self, api: Api) -> None:
        await api.create_phrase()
        for action in (Action.SUBMIT, Action.APPROVE, Action.REJECT, Action.RETIRE):
            assert_refused(await attempt(api, 7, action), 404, "version-not-found", action)
        response = await patch(api, "recording", 7, {"change_note": "x"}, if_match='"v7.r1"')
        assert_problem(response, 404, "version-not-found")
        response = await api.transition("nope", 1, "submit", "alice")
        assert_problem(response, 404, "phrase-not-found")


class TestRoles:
    async def test_only_editors_submit_and_only_approvers_judge(self, api: Api) -> None:
        await api.create_phrase()
        number = (await api.create_version())["number"]
        for who in ("bob", "agent-1", "audrey"):
            response = await api.transition("recording", number, "submit", who)
            assert_refused(response, 403, "forbidden", who)
        assert (await get_version(api, "recording", number)).json()["status"] == "draft"

        assert (await api.transition("recording", number, "submit", "alice")).status_code == 200
        for action in ("approve", "reject", "retire"):
            response = await api.transition("recording", number, action, "carol", {"reason": "r"})
            assert_refused(response, 403, "forbidden", action)
        assert (await get_version(api, "recording", number)).json()["status"] == "in_review"


class TestFinishedVersionsNeverChange:
    async def test_patch_is_refused_and_content_stays_identical(self, api: Api) -> None:
        await api.create_phrase()
        for status in (Status.APPROVED, Status.REJECTED, Status.RETIRED):
            number = await version_in(api, status)
            before = await get_version(api, "recording", number)
            url = version_url("recording", number)

            edits: list[dict[str, Any]] = [
                {"texts": {"en-US": "Different words."}},
                {"variables": []},
                {"change_note": "sneaky"},
                {"effective_until": "2999-01-01T00:00:00Z"},
            ]
            for body in edits:
                headers = {**api.as_("eve"), "If-Match": before.headers["ETag"]}
                response = await api.http.patch(url, json=body, headers=headers)
                problem = assert_refused(response, 409, "illegal-transition", (status, body))
                assert "can never change" in problem["detail"]

            after = await get_version(api, "recording", number)
            assert after.json() == before.json(), status
            assert after.headers["ETag"] == before.headers["ETag"]
