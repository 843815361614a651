"""The append path: linking after events this process did not write (another replica's, or its own
rolled back), many writers on two engines at once, and the round trips an append takes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.audit import service as audit
from service.audit.models import AuditEvent
from service.kit.actor import Actor
from service.kit.db import create_engine, create_sessionmaker
from tests.audit.support import all_events, verify
from tests.conftest import backend
from tests.helpers import Api

TESTER = Actor("tester", "k-tester")


def here(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    result: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return result


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Another replica of the service on the same database: an engine and pool of its own."""
    engine = create_engine(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def append(
    maker: async_sessionmaker[AsyncSession], action: str, subject_id: str = "1"
) -> AuditEvent:
    async with maker.begin() as db:
        return await audit.append(db, TESTER, action, "test", subject_id, {"n": subject_id})


async def intact(api: Api) -> list[dict[str, Any]]:
    events = await all_events(api)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for previous, event in pairwise(events):
        assert event["prev_hash"] == previous["hash"]
    result = await verify(api)
    assert (result["ok"], result["checked"]) == (True, len(events)), result
    return events


class TestLinkingAfterOtherWriters:
    async def test_an_event_of_another_replica_is_linked_to(
        self, api: Api, app: FastAPI, replica: async_sessionmaker[AsyncSession]
    ) -> None:
        mine = await append(here(app), "test.here")
        theirs = await append(replica, "test.there")
        again = await append(here(app), "test.here.again")
        assert (theirs.seq, theirs.prev_hash) == (mine.seq + 1, mine.hash)
        assert (again.seq, again.prev_hash) == (theirs.seq + 1, theirs.hash)
        events = await intact(api)
        assert [e["action"] for e in events[-3:]] == ["test.here", "test.there", "test.here.again"]

    async def test_a_rolled_back_event_is_not_linked_to(self, api: Api, app: FastAPI) -> None:
        head = await append(here(app), "test.before")
        async with here(app)() as db:
            lost = await audit.append(db, TESTER, "test.lost", "test", "1")
            await db.rollback()
        after = await append(here(app), "test.after")
        assert (after.seq, after.prev_hash) == (lost.seq, head.hash)
        assert [e["action"] for e in (await intact(api))[-2:]] == ["test.before", "test.after"]

    async def test_another_replicas_event_in_the_place_of_a_rolled_back_one(
        self, api: Api, app: FastAPI, replica: async_sessionmaker[AsyncSession]
    ) -> None:
        """The same seq as the event this process last linked, but another event: its hash, not
        its number, is what the next event must link to."""
        async with here(app)() as db:
            lost = await audit.append(db, TESTER, "test.lost", "test", "1")
            await db.rollback()
        theirs = await append(replica, "test.there")
        assert theirs.seq == lost.seq
        assert theirs.hash != lost.hash
        mine = await append(here(app), "test.here")
        assert (mine.seq, mine.prev_hash) == (theirs.seq + 1, theirs.hash)
        await intact(api)


class TestManyWritersAtOnce:
    async def test_writers_on_two_replicas_leave_one_chain(
        self, api: Api, app: FastAPI, replica: async_sessionmaker[AsyncSession]
    ) -> None:
        before = len(await all_events(api))
        makers = [here(app), replica]
        await asyncio.gather(*(append(makers[i % 2], "test.many", str(i)) for i in range(40)))
        events = await intact(api)
        added = events[before:]
        assert sorted(int(e["subject_id"]) for e in added) == list(range(40))
        assert all(e["details"] == {"n": e["subject_id"]} for e in added)

    async def test_appended_last_blocks_on_two_replicas_stay_together(
        self, api: Api, app: FastAPI, replica: async_sessionmaker[AsyncSession]
    ) -> None:
        async def block(maker: async_sessionmaker[AsyncSession], i: int) -> None:
            async with maker.begin() as db, audit.appended_last(db):
                for j in range(3):
                    await audit.append(db, TESTER, "test.block", "test", f"{i}-{j}")

        before = len(await all_events(api))
        await asyncio.gather(*(block([here(app), replica][i % 2], i) for i in range(10)))
        added = (await intact(api))[before:]
        assert len(added) == 30
        for start in range(0, 30, 3):
            subjects = [e["subject_id"] for e in added[start : start + 3]]
            i = subjects[0].split("-")[0]
            assert subjects == [f"{i}-0", f"{i}-1", f"{i}-2"]


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(*args: Any) -> None:
        seen.append(str(args[2]).split(None, 1)[0].upper())

    sa.event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", note)


class TestRoundTrips:
    async def test_after_its_own_append_a_process_appends_without_reading_the_head(
        self, api: Api, app: FastAPI
    ) -> None:
        maker = here(app)
        await append(maker, "test.first")
        engine = maker.kw["bind"]
        with statements(engine) as seen:
            second = await append(maker, "test.second")
        # The lock (PostgreSQL), one INSERT that checks the head itself, the commit.
        lock = ["SELECT"] if backend() == "postgresql" else []
        assert [s for s in seen if s not in ("BEGIN", "COMMIT")] == [*lock, "INSERT"]
        events = await intact(api)
        assert events[-1]["hash"] == second.hash
