"""The version lifecycle as data: which action moves which status where."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETIRED = "retired"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    RETIRE = "retire"


# action -> (statuses it may start from, status it leads to). Approve leads to APPROVED only once
# enough distinct approvals are in; until then the version stays in review.
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.EDIT: (frozenset({Status.DRAFT}), Status.DRAFT),
    Action.SUBMIT: (frozenset({Status.DRAFT}), Status.IN_REVIEW),
    Action.APPROVE: (frozenset({Status.IN_REVIEW}), Status.APPROVED),
    Action.REJECT: (frozenset({Status.IN_REVIEW}), Status.REJECTED),
    Action.RETIRE: (frozenset({Status.APPROVED}), Status.RETIRED),
}


def illegal_reason(status: Status, action: Action) -> str | None:
    """Why ``action`` is not allowed on a version in ``status``, or None when it is."""
    sources, _ = TRANSITIONS[action]
    if status in sources:
        return None
    allowed = " or ".join(sorted(s.value for s in sources))
    if status in (Status.APPROVED, Status.REJECTED, Status.RETIRED) and action is Action.EDIT:
        return f"version is {status.value} and can never change; create a new version instead"
    return f"cannot {action.value} a version that is {status.value} (only when {allowed})"
