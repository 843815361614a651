"""The version lifecycle (service.phrases.lifecycle) against the product's own words: draft ->
in_review -> approved | rejected; approved -> retired; only drafts are edited; nothing goes back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.phrases.lifecycle import TRANSITIONS, Action, Status, illegal_reason
from tests.properties.support import BOUNDED

# The model: every allowed (status, action) and where it leads; anything else is refused.
MODEL = {
    (Status.DRAFT, Action.EDIT): Status.DRAFT,
    (Status.DRAFT, Action.SUBMIT): Status.IN_REVIEW,
    (Status.IN_REVIEW, Action.APPROVE): Status.APPROVED,
    (Status.IN_REVIEW, Action.REJECT): Status.REJECTED,
    (Status.APPROVED, Action.RETIRE): Status.RETIRED,
}
# Where a version may be after any history, in the order it can get there.
ORDER = {Status.DRAFT: 0, Status.IN_REVIEW: 1, Status.APPROVED: 2, Status.REJECTED: 2}
ORDER[Status.RETIRED] = 3


def step(status: Status, action: Action) -> Status | None:
    """What the table does: the next status, or None when the action is refused (with a reason)."""
    reason = illegal_reason(status, action)
    if reason is not None:
        assert (status.value in reason and action.value in reason) or "never change" in reason
        return None
    sources, target = TRANSITIONS[action]
    assert status in sources
    return target


class TestLifecycle:
    @BOUNDED
    @given(status=st.sampled_from(Status), action=st.sampled_from(Action))
    def test_the_table_is_the_model(self, status: Status, action: Action) -> None:
        assert step(status, action) == MODEL.get((status, action))

    @BOUNDED
    @given(actions=st.lists(st.sampled_from(Action), max_size=30))
    def test_any_history_only_moves_forward(self, actions: list[Action]) -> None:
        status, seen = Status.DRAFT, [Status.DRAFT]
        for action in actions:
            after = step(status, action)
            if after is None:
                continue
            assert ORDER[after] >= ORDER[status]  # never back to an earlier stage
            if status is not Status.DRAFT:
                assert action is not Action.EDIT  # what left draft never changes
            status = after
            seen.append(status)
        if Status.REJECTED in seen:
            assert Status.APPROVED not in seen  # rejected and approved exclude each other
        if Status.RETIRED in seen:
            assert seen.index(Status.APPROVED) < seen.index(Status.RETIRED)

    @BOUNDED
    @given(
        status=st.sampled_from([Status.REJECTED, Status.RETIRED]), action=st.sampled_from(Action)
    )
    def test_rejected_and_retired_are_final(self, status: Status, action: Action) -> None:
        assert step(status, action) is None

    def test_every_status_is_reachable_from_draft(self) -> None:
        reached, frontier = {Status.DRAFT}, [Status.DRAFT]
        while frontier:
            status = frontier.pop()
            for action in Action:
                after = step(status, action)
                if after is not None and after not in reached:
                    reached.add(after)
                    frontier.append(after)
        assert reached == set(Status)
