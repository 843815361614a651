"""claim_guard: one greeting per conversation, across reconnects, sessions and replicas.

Each claim runs as the relay runs it: the greeting's delivery row and the claim in one
transaction. The races use separate sessions (separate connections): on PostgreSQL they overlap
and the database decides; on SQLite every writing transaction begins IMMEDIATE, so a second one
waits for the first to end, and must still see the first's guard and lose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.deliveries.models import Delivery
from service.greetings.models import GreetingGuard
from service.greetings.service import claim_guard
from service.kit.base import utcnow
from service.sessions.models import LiveSession
from tests.greetings.support import greeting, live_session, maker

KEY = "conv-1"
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
def db_maker(app: FastAPI) -> Maker:
    return maker(app)


async def connected(db_maker: Maker, conversation_key: str = KEY) -> LiveSession:
    """A live session row, committed, as the relay writes it on connect."""
    session = live_session(conversation_key)
    async with db_maker.begin() as db:
        db.add(session)
    return session


async def claim(db: AsyncSession, session: LiveSession, delivery: Delivery, key: str = KEY) -> bool:
    db.add(delivery)
    await db.flush()
    return await claim_guard(db, key, session_id=session.id, delivery_id=delivery.id)


async def claim_committed(db_maker: Maker, session: LiveSession, key: str = KEY) -> bool:
    async with db_maker.begin() as db:
        return await claim(db, session, greeting(session), key)


async def holder(db_maker: Maker, key: str = KEY) -> tuple[str, str, datetime] | None:
    async with db_maker() as db:
        row = (
            await db.execute(
                sa.select(
                    GreetingGuard.session_id, GreetingGuard.delivery_id, GreetingGuard.claimed_at
                ).where(GreetingGuard.conversation_key == key)
            )
        ).first()
    return None if row is None else (row.session_id, row.delivery_id, row.claimed_at)


async def greeted(
    db_maker: Maker, status: str = "queued", first_audio_at: datetime | None = None
) -> Delivery:
    """A session that claimed the guard; its greeting then reached ``status``."""
    session = await connected(db_maker)
    delivery = greeting(session)
    async with db_maker.begin() as db:
        assert await claim(db, session, delivery)
    async with db_maker.begin() as db:
        await db.execute(
            sa.update(Delivery)
            .where(Delivery.id == delivery.id)
            .values(status=status, first_audio_at=first_audio_at)
        )
    return delivery


class TestClaimGuard:
    async def test_the_first_claim_for_a_conversation_wins(self, db_maker: Maker) -> None:
        session = await connected(db_maker)
        delivery = greeting(session)
        async with db_maker.begin() as db:
            assert await claim(db, session, delivery) is True
        found = await holder(db_maker)
        assert found is not None
        assert found[:2] == (session.id, delivery.id)

    async def test_conversations_are_guarded_separately(self, db_maker: Maker) -> None:
        first = await connected(db_maker, "conv-a")
        second = await connected(db_maker, "conv-b")
        assert await claim_committed(db_maker, first, "conv-a") is True
        assert await claim_committed(db_maker, second, "conv-b") is True

    @pytest.mark.parametrize(
        ("status", "heard"),
        [
            ("queued", False),
            ("sent", False),
            ("started", False),
            ("speaking", True),
            ("completed", True),
            ("interrupted", True),
            ("interrupted", False),
            ("failed", True),
            ("expired", True),
            ("skipped", True),
        ],
    )
    async def test_a_greeting_pending_or_heard_holds_the_guard(
        self, db_maker: Maker, status: str, heard: bool
    ) -> None:
        held = await greeted(db_maker, status, utcnow() if heard else None)
        before = await holder(db_maker)

        reconnect = await connected(db_maker)
        assert await claim_committed(db_maker, reconnect) is False

        after = await holder(db_maker)
        assert after == before
        assert after is not None
        assert after[1] == held.id

    @pytest.mark.parametrize("status", ["failed", "expired", "skipped"])
    async def test_a_greeting_that_ended_unheard_is_taken_over(
        self, db_maker: Maker, status: str
    ) -> None:
        await greeted(db_maker, status, first_audio_at=None)
        before = await holder(db_maker)
        assert before is not None

        reconnect = await connected(db_maker)
        delivery = greeting(reconnect)
        async with db_maker.begin() as db:
            assert await claim(db, reconnect, delivery) is True

        after = await holder(db_maker)
        assert after is not None
        assert after[:2] == (reconnect.id, delivery.id)
        assert after[2] > before[2]

    async def test_a_guard_whose_delivery_is_gone_is_taken_over(self, db_maker: Maker) -> None:
        held = await greeted(db_maker, "completed", utcnow())
        async with db_maker.begin() as db:
            await db.execute(sa.delete(Delivery).where(Delivery.id == held.id))

        reconnect = await connected(db_maker)
        assert await claim_committed(db_maker, reconnect) is True
        after = await holder(db_maker)
        assert after is not None
        assert after[0] == reconnect.id

    async def test_claiming_again_for_the_same_greeting_is_still_true(
        self, db_maker: Maker
    ) -> None:
        session = await connected(db_maker)
        delivery = greeting(session)
        async with db_maker.begin() as db:
            assert await claim(db, session, delivery)
        async with db_maker.begin() as db:
            again = await claim_guard(db, KEY, session_id=session.id, delivery_id=delivery.id)
        assert again is True
        other = await connected(db_maker)
        assert await claim_committed(db_maker, other) is False

    async def test_the_claim_is_the_callers_to_commit(self, db_maker: Maker) -> None:
        session = await connected(db_maker)
        async with db_maker() as db:
            assert await claim(db, session, greeting(session)) is True
            await db.rollback()
        assert await holder(db_maker) is None
        assert await claim_committed(db_maker, await connected(db_maker)) is True

    async def test_a_lost_claim_leaves_the_callers_transaction_usable(
        self, db_maker: Maker
    ) -> None:
        await greeted(db_maker, "completed", utcnow())
        reconnect = await connected(db_maker)
        delivery = greeting(reconnect)
        async with db_maker.begin() as db:
            assert await claim(db, reconnect, delivery) is False
            # What the relay does next in the same transaction: record why it will not greet.
            await db.execute(
                sa.update(Delivery).where(Delivery.id == delivery.id).values(status="skipped")
            )
        async with db_maker() as db:
            status = await db.scalar(sa.select(Delivery.status).where(Delivery.id == delivery.id))
        assert status == "skipped"


@pytest.fixture
async def open_transactions(db_maker: Maker) -> AsyncIterator[list[AsyncSession]]:
    """Sessions a test leaves open while another claims; closed (rolled back) at the end."""
    sessions: list[AsyncSession] = []
    yield sessions
    for session in sessions:
        await session.close()


class TestRace:
    async def test_a_claim_waits_for_an_uncommitted_one_then_loses(
        self, db_maker: Maker, open_transactions: list[AsyncSession]
    ) -> None:
        first, second = await connected(db_maker), await connected(db_maker)
        winner = db_maker()
        open_transactions.append(winner)
        won = greeting(first)
        assert await claim(winner, first, won) is True

        contender = asyncio.create_task(claim_committed(db_maker, second))
        await asyncio.sleep(0.5)
        assert not contender.done(), "the second claim did not wait for the first to end"
        await winner.commit()

        assert await asyncio.wait_for(contender, 30) is False
        found = await holder(db_maker)
        assert found is not None
        assert found[:2] == (first.id, won.id)

    async def test_a_claim_waiting_on_one_that_rolls_back_wins(
        self, db_maker: Maker, open_transactions: list[AsyncSession]
    ) -> None:
        first, second = await connected(db_maker), await connected(db_maker)
        abandoned = db_maker()
        open_transactions.append(abandoned)
        assert await claim(abandoned, first, greeting(first)) is True

        contender = asyncio.create_task(claim_committed(db_maker, second))
        await asyncio.sleep(0.5)
        assert not contender.done(), "the second claim did not wait for the first to end"
        await abandoned.rollback()

        assert await asyncio.wait_for(contender, 30) is True
        found = await holder(db_maker)
        assert found is not None
        assert found[0] == second.id

    async def test_many_sessions_racing_for_a_new_conversation_one_wins(
        self, db_maker: Maker
    ) -> None:
        sessions = [await connected(db_maker) for _ in range(5)]

        results = await asyncio.gather(*(claim_committed(db_maker, s) for s in sessions))

        assert sorted(results) == [False, False, False, False, True]
        found = await holder(db_maker)
        assert found is not None
        assert found[0] == sessions[results.index(True)].id

    async def test_many_sessions_racing_to_take_over_an_unheard_greeting_one_wins(
        self, db_maker: Maker
    ) -> None:
        failed = await greeted(db_maker, "failed")
        sessions = [await connected(db_maker) for _ in range(5)]

        results = await asyncio.gather(*(claim_committed(db_maker, s) for s in sessions))

        assert sorted(results) == [False, False, False, False, True]
        found = await holder(db_maker)
        assert found is not None
        assert found[0] == sessions[results.index(True)].id
        assert found[1] != failed.id
