"""The intake: delivery requests that wait at the same moment share one transaction (group commit),
each answered only once its own row and audit event are committed, and none lost to another's
failure."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.audit import service as audit
from service.deliveries.intake import Admission, intake_for
from service.deliveries.models import Delivery
from service.deliveries.states import Priority, Status
from service.kit.actor import Actor
from service.kit.base import utcnow
from tests.deliveries.test_recorder import chain_of, live_session_with, maker_of

AGENT = Actor("agent-1", "key_1")


def values(session_id: str, delivery_id: str, key: str | None = None) -> dict[str, Any]:
    return {
        "id": delivery_id, "session_id": session_id, "kind": "phrase", "greeting_policy": None,
        "phrase_key": "greeting", "version": 1, "locale": "en-US", "text": "Hello.",
        "instructions": None, "sha256": "0" * 64, "variables": {}, "status": Status.QUEUED.value,
        "priority": Priority.APPEND.value, "interruptible": True, "attempts": 0,
        "max_attempts": 1, "requested_by": AGENT.principal, "requested_key_id": AGENT.key_id,
        "idempotency_key": key, "request_hash": None, "requested_at": utcnow(),
    }  # fmt: skip


async def stored(maker: async_sessionmaker[AsyncSession], delivery_id: str) -> bool:
    """Whether another connection sees the row and its queued event (i.e. they are committed)."""
    async with maker() as db:
        row = await db.get(Delivery, delivery_id)
        events = await db.scalars(
            sa.select(sa.func.count())
            .select_from(sa.table("audit_events", sa.column("subject_id"), sa.column("action")))
            .where(sa.column("subject_id") == delivery_id, sa.column("action") == "delivery.queued")
        )
        return row is not None and events.one() == 1


class TestGroupCommit:
    async def test_requests_waiting_together_share_a_transaction_each_committed_in_order(
        self, app: FastAPI
    ) -> None:
        maker = maker_of(app)
        session_id = await live_session_with(maker)
        intake = intake_for(maker)
        ids = [f"dlv_{n:02d}" for n in range(12)]
        committed_when_answered: dict[str, bool] = {}

        async def request(delivery_id: str) -> None:
            await intake.admit(Admission(AGENT, values(session_id, delivery_id)))
            # What the request does next is send: its record must already be committed.
            committed_when_answered[delivery_id] = await stored(
                app.state.read_sessionmaker, delivery_id
            )

        await asyncio.gather(*(request(i) for i in ids))

        assert committed_when_answered == dict.fromkeys(ids, True)
        # All had arrived before the writer ran: one transaction for the twelve.
        assert intake.batches == 1
        assert await chain_of(maker) == [("delivery.queued", i) for i in ids]  # arrival order
        async with maker() as db:
            assert (await audit.verify(db)).ok

    async def test_a_request_that_fails_does_not_take_the_others_of_its_batch(
        self, app: FastAPI
    ) -> None:
        maker = maker_of(app)
        session_id = await live_session_with(maker)
        intake = intake_for(maker)
        batch = [
            values(session_id, "dlv_first"),
            values(session_id, "dlv_keyed", key="same-key"),
            values(session_id, "dlv_same_key", key="same-key"),  # the key is taken: refused
            values(session_id, "dlv_last"),
        ]
        outcomes = await asyncio.gather(
            *(intake.admit(Admission(AGENT, v)) for v in batch), return_exceptions=True
        )

        assert [outcomes[0], outcomes[1], outcomes[3]] == [None, None, None]
        assert isinstance(outcomes[2], IntegrityError)
        for kept in ("dlv_first", "dlv_keyed", "dlv_last"):
            assert await stored(maker, kept)
        assert not await stored(maker, "dlv_same_key")
        assert await chain_of(maker) == [
            ("delivery.queued", "dlv_first"),
            ("delivery.queued", "dlv_keyed"),
            ("delivery.queued", "dlv_last"),
        ]
        async with maker() as db:
            assert (await audit.verify(db)).ok

    async def test_a_request_gone_while_its_row_was_committed_still_goes_out(
        self, app: FastAPI
    ) -> None:
        maker = maker_of(app)
        session_id = await live_session_with(maker)
        intake = intake_for(maker)
        sent_anyway = asyncio.Event()
        first = asyncio.create_task(intake.admit(Admission(AGENT, values(session_id, "dlv_a"))))
        await asyncio.sleep(0)  # the first is being written; the next one waits for it
        waiting = asyncio.create_task(
            intake.admit(Admission(AGENT, values(session_id, "dlv_gone"), orphaned=sent_anyway.set))
        )
        await asyncio.sleep(0)
        waiting.cancel()  # its client went away while it waited
        await first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with asyncio.timeout(5):
            await sent_anyway.wait()
        assert await stored(maker, "dlv_gone")

    async def test_when_the_intake_stops_no_request_is_left_waiting(self, app: FastAPI) -> None:
        """The app stopping cancels the intake's writer: every request still waiting in its
        queue is cancelled too, rather than waiting for an answer that never comes."""
        maker = maker_of(app)
        session_id = await live_session_with(maker)
        intake = intake_for(maker)
        requests = [
            asyncio.create_task(intake.admit(Admission(AGENT, values(session_id, f"dlv_{n}"))))
            for n in range(6)
        ]
        await asyncio.sleep(0)  # the first is being written; the others wait in the queue
        writer = intake._task
        assert writer is not None
        writer.cancel()
        async with asyncio.timeout(5):
            results = await asyncio.gather(*requests, return_exceptions=True)
        assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
