"""A session holds at most ``COMPLIANCE_DELIVERY_QUEUE_LIMIT`` waiting deliveries, also when the
requests arrive together and are committed together (the intake writes them in one
transaction): the rest get 429 and nothing of them is recorded."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import assert_problem
from tests.live.harness import Live

LIMIT = 3
TEXT = "This call is recorded for quality and training purposes."


@pytest.fixture
def live_settings() -> dict[str, object]:
    return {"delivery_queue_limit": LIMIT}


async def test_requests_arriving_together_are_held_to_the_queue_limit(live: Live) -> None:
    await live.approved_phrase("recording", TEXT)
    async with live.agent() as agent:
        target = f"/v1/sessions/{agent.session_id}/deliveries"
        answers = await asyncio.gather(
            *(
                live.api.http.post(
                    target, json={"phrase_key": "recording"}, headers=live.api.as_("agent-1")
                )
                for _ in range(12)
            )
        )
        accepted = [a for a in answers if a.status_code == 201]
        refused = [a for a in answers if a.status_code != 201]
        # LIMIT wait; one more may already have left the queue for the upstream.
        assert LIMIT <= len(accepted) <= LIMIT + 1
        for answer in refused:
            assert_problem(answer, 429, "delivery-queue-full")
        recorded = await live.api.http.get(target, headers=live.api.as_("agent-1"))
        assert len(recorded.json()["items"]) == len(accepted)
