"""Write transactions given as one synchronous function (``kit.db.Transactions``, what the
delivery intake writes with): committed or rolled back as a whole; on SQLite run on a writer
thread, so a transaction that waits for the database lock never stalls the event loop; and
linking the audit chain in turn with the ordinary async writers of the same database."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from service.audit import service as audit
from service.audit.models import AuditEvent
from service.kit.actor import Actor
from service.kit.db import create_engine, create_sessionmaker, transactions_for
from tests.conftest import backend

TESTER = Actor("tester", "key-1")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def event(subject: str) -> AuditEvent:
    return audit.new_event(TESTER, "test.written", "thing", subject, {"n": subject})


async def stored(engine: AsyncEngine) -> list[str]:
    async with create_sessionmaker(engine)() as db:
        query = sa.select(AuditEvent.subject_id).where(AuditEvent.action == "test.written")
        return list((await db.scalars(query.order_by(AuditEvent.seq))).all())


async def chain_ok(engine: AsyncEngine) -> bool:
    async with create_sessionmaker(engine)() as db:
        return (await audit.verify(db)).ok


async def test_what_the_work_wrote_is_committed_and_its_result_returned(
    engine: AsyncEngine,
) -> None:
    def write(db: Session) -> int:
        audit.link_now(db, [event("a"), event("b")])
        return 7

    assert await transactions_for(engine).run(write) == 7
    assert await stored(engine) == ["a", "b"]
    assert await chain_ok(engine)


async def test_work_that_raises_leaves_nothing_and_the_next_one_goes_through(
    engine: AsyncEngine,
) -> None:
    def fails(db: Session) -> None:
        audit.link_now(db, [event("lost")])
        raise ValueError("refused half way")

    with pytest.raises(ValueError, match="half way"):
        await transactions_for(engine).run(fails)
    assert await stored(engine) == []
    await transactions_for(engine).run(lambda db: audit.link_now(db, [event("kept")]))
    assert await stored(engine) == ["kept"]
    assert await chain_ok(engine)


async def test_it_links_the_chain_in_turn_with_the_async_writers(engine: AsyncEngine) -> None:
    """Two engines on one database (the async one, and on SQLite the writer thread's own): each
    links to the head the other left, whichever wrote last."""
    maker = create_sessionmaker(engine)
    transactions = transactions_for(engine)
    for i in range(6):
        async with maker.begin() as db:
            await audit.append(db, TESTER, "test.written", "thing", f"async-{i}")
        linked = [event(f"one-trip-{i}")]
        await transactions.run(lambda db: audit.link_now(db, linked))  # noqa: B023 (awaited here)
    expected = [name for i in range(6) for name in (f"async-{i}", f"one-trip-{i}")]
    assert await stored(engine) == expected
    assert await chain_ok(engine)


async def test_on_sqlite_a_transaction_waiting_for_the_lock_does_not_stall_the_loop(
    engine: AsyncEngine,
) -> None:
    if backend() != "sqlite":
        pytest.skip("the writer thread is SQLite's; PostgreSQL's driver has no thread")
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async with create_sessionmaker(engine).begin() as holder:
        await audit.append(holder, TESTER, "test.written", "thing", "holder")  # holds the lock
        clock = asyncio.create_task(ticker())
        waiting = asyncio.create_task(
            transactions_for(engine).run(lambda db: audit.link_now(db, [event("waiter")]))
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits for the lock ...
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) >= 10
        assert max(gaps) < 0.1  # ... while the loop goes on
    await asyncio.wait_for(waiting, 5)  # and writes once the holder committed
    clock.cancel()
    assert await stored(engine) == ["holder", "waiter"]
    assert await chain_ok(engine)


async def test_an_in_memory_sqlite_database_is_written_on_its_own_connection() -> None:
    """A second connection to ``sqlite://`` would open another, empty database."""
    engine = create_engine("sqlite://")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(AuditEvent.metadata.create_all)
        await transactions_for(engine).run(lambda db: audit.link_now(db, [event("kept")]))
        assert await stored(engine) == ["kept"]
    finally:
        await engine.dispose()
