"""service.audit.service used directly, as other packages do: append, and appended_last for work
that appends several events with row locks in between."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.audit import service as audit
from service.audit.chain import verify_chain
from service.audit.models import AuditEvent
from service.audit.schemas import AuditEventRead
from service.kit.actor import Actor
from tests.audit.support import all_events, disable_append_only, verify
from tests.conftest import backend
from tests.helpers import Api

TESTER = Actor("tester", "k-tester")


def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    result: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return result


class TestAppendedLast:
    async def test_events_are_linked_in_order_when_the_block_ends(
        self, api: Api, app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="service.audit")
        head = (await verify(api))["head_seq"]
        caplog.clear()
        async with maker(app).begin() as db:
            async with audit.appended_last(db):
                first = await audit.append(db, TESTER, "test.one", "test", "1", {"n": 1})
                second = await audit.append(db, TESTER, "test.two", "test", "2")
                assert await head_in(db) == head  # nothing linked yet
            assert (first.seq, second.seq) == (head + 1, head + 2)
            assert second.prev_hash == first.hash
            assert first.at <= second.at
        events = await all_events(api)
        assert [(e["seq"], e["action"], e["key_id"]) for e in events[-2:]] == [
            (head + 1, "test.one", "k-tester"),
            (head + 2, "test.two", "k-tester"),
        ]
        assert events[-2]["details"] == {"n": 1}
        assert [
            r.__dict__["audit_event"]["seq"] for r in caplog.records if r.name == "service.audit"
        ] == [
            head + 1,
            head + 2,
        ]
        assert (await verify(api))["ok"] is True

    async def test_nothing_is_linked_when_the_block_raises(
        self, api: Api, app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="service.audit")
        before = await all_events(api)
        caplog.clear()

        class Boom(Exception):
            pass

        async with maker(app)() as db:
            try:
                async with audit.appended_last(db):
                    await audit.append(db, TESTER, "test.lost", "test", "1")
                    raise Boom
            except Boom:
                pass
            await db.commit()
            # the session appends normally again afterwards
            row = await audit.append(db, TESTER, "test.after", "test", "2")
            assert row.seq == before[-1]["seq"] + 1
            await db.commit()
        events = await all_events(api)
        assert events[: len(before)] == before
        assert [e["action"] for e in events[len(before) :]] == ["test.after"]
        assert [
            r.__dict__["audit_event"]["action"] for r in caplog.records if r.name == "service.audit"
        ] == ["test.after"]

    async def test_nested_blocks_link_once_at_the_outermost_end(
        self, api: Api, app: FastAPI
    ) -> None:
        head = (await verify(api))["head_seq"]
        async with maker(app).begin() as db:
            async with audit.appended_last(db):
                async with audit.appended_last(db):
                    inner = await audit.append(db, TESTER, "test.inner", "test", "1")
                assert await head_in(db) == head
                outer = await audit.append(db, TESTER, "test.outer", "test", "2")
            assert (inner.seq, outer.seq) == (head + 1, head + 2)
        assert (await verify(api))["head_seq"] == head + 2

    async def test_an_empty_block_appends_nothing(self, api: Api, app: FastAPI) -> None:
        before = await all_events(api)
        async with maker(app).begin() as db, audit.appended_last(db):
            pass
        assert await all_events(api) == before


async def head_in(db: AsyncSession) -> int:
    """The head seq as this transaction sees it."""
    return int(await db.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEvent.seq), 0))) or 0)


class TestReadingTheChain:
    @pytest.mark.parametrize("batch", [1, 2, 3, 5])
    async def test_batches_yield_every_event_once_in_order(
        self, api: Api, app: FastAPI, batch: int
    ) -> None:
        await api.create_phrase()
        await api.approved_version()
        expected = await all_events(api)
        async with maker(app)() as db:
            read = [event async for event in audit.iter_events(db, batch=batch)]
        assert [e["seq"] for e in read] == [e["seq"] for e in expected]
        assert [e["hash"] for e in read] == [e["hash"] for e in expected]

    async def test_events_are_read_typed_as_the_api_serves_them(
        self, api: Api, app: FastAPI
    ) -> None:
        await api.create_phrase()
        await api.approved_version()
        served = await all_events(api)
        async with maker(app)() as db:
            read = [dict(event) async for event in audit.iter_events(db)]
        assert all(e["at"].tzinfo is not None for e in read)
        assert [AuditEventRead.model_validate(e).model_dump(mode="json") for e in read] == [
            AuditEventRead.model_validate(e).model_dump(mode="json") for e in served
        ]
        assert verify_chain(read).ok

    @pytest.mark.skipif(
        backend() == "postgresql", reason="typed columns keep undecodable values out"
    )
    async def test_an_undecodable_row_deep_in_a_later_batch_is_named(
        self, api: Api, app: FastAPI, attacker: AsyncEngine
    ) -> None:
        await api.create_phrase()
        await api.approved_version()
        async with attacker.begin() as connection:
            await disable_append_only(connection)
            await connection.execute(sa.text("UPDATE audit_events SET details = '{' WHERE seq = 8"))
        async with maker(app)() as db:
            read: list[int] = []

            async def read_all() -> None:
                async for event in audit.iter_events(db, batch=3):
                    read.append(event["seq"])

            with pytest.raises(audit.UnreadableEvent) as caught:
                await read_all()
            assert caught.value.seq == 8
            assert read == list(range(1, 8))
            result = await audit.verify(db)
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 8, 7)
