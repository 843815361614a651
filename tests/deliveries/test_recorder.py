"""The recorder: every live session's delivery records, written in batches, in order, none lost;
and the gate that keeps delivery writes from waiting on each other in SQLite's busy handler."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from service.audit import service as audit
from service.audit.models import AuditEvent
from service.deliveries import recorder as recorders
from service.deliveries.models import Delivery, DeliveryAttempt
from service.deliveries.recorder import Entry, WriteGate, recorder_for
from service.deliveries.states import Priority, Status
from service.deliveries.tracking import Attempt, Record, Tracked
from service.kit.actor import Actor
from service.kit.base import utcnow
from service.sessions import service as sessions
from service.sessions.schemas import Kind


def maker_of(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


async def live_session_with(maker: async_sessionmaker[AsyncSession], *ids: str) -> str:
    """A live session and a queued delivery row for each of ``ids``."""
    async with maker.begin() as db:
        session = await sessions.open_session(
            db, Actor("agent-1"), kind=Kind.RELAY, conversation_key=None, locale="en-US",
            model=None, greeting_policy=None, replica=None,
        )  # fmt: skip
        for delivery_id in ids:
            db.add(
                Delivery(
                    id=delivery_id, session_id=session.id, kind="phrase", text="Hello.",
                    status=Status.QUEUED.value, priority=Priority.APPEND.value,
                    interruptible=True, requested_by="agent-1", requested_at=utcnow(),
                )
            )  # fmt: skip
        return session.id


class Play:
    """A delivery moving through its states, one ``Record`` per transition."""

    def __init__(self, delivery_id: str) -> None:
        self.tracked = Tracked(delivery_id, "Hello.", None, Priority.APPEND, True, 1)

    def record(self, status: Status, **changes: object) -> Record:
        now = utcnow()
        tracked = self.tracked
        if status is Status.SENT:
            tracked.attempts.append(Attempt(1, f"{tracked.id}.1", now))
            tracked.sent_at = now
        for name, value in changes.items():
            setattr(tracked, name, value)
        tracked.status = status
        attempt = tracked.current
        if attempt is not None and status in (Status.COMPLETED, Status.FAILED):
            attempt.ended_at, attempt.outcome = now + timedelta(seconds=1), status.value
        return Record(
            tracked.id,
            f"delivery.{status.value}",
            tracked.snapshot(),
            dataclasses.asdict(attempt) if attempt else None,
            final=status in (Status.COMPLETED, Status.FAILED),
        )


async def chain_of(maker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with maker() as db:
        rows = await db.execute(
            sa.select(AuditEvent.action, AuditEvent.subject_id)
            .where(AuditEvent.subject_type == "delivery")
            .order_by(AuditEvent.seq)
        )
        return [(action, subject) for action, subject in rows.all()]


class TestRecords:
    async def test_sessions_records_end_in_their_last_state_with_each_transition_audited_in_order(
        self, app: FastAPI
    ) -> None:
        maker = maker_of(app)
        first = await live_session_with(maker, "dlv_a")
        second = await live_session_with(maker, "dlv_b")
        a, b = Play("dlv_a"), Play("dlv_b")
        recorder = recorder_for(maker)
        recorder.attach()
        wrote: list[str] = []
        order = [
            (first, a.record(Status.SENT)),
            (second, b.record(Status.SENT)),
            (first, a.record(Status.STARTED, response_id="resp_1")),
            (first, a.record(Status.COMPLETED, transcript="Hello.", transcript_verified=True)),
            (second, b.record(Status.FAILED, failure_reason="refused")),
        ]
        for session_id, record in order:
            done = (lambda d=record.delivery_id: wrote.append(d)) if record.final else None
            recorder.put(Entry(session_id, record.action, record=record, done=done))
        await recorder.written()
        recorder.detach()

        async with maker() as db:
            rows = {d.id: d for d in (await db.scalars(sa.select(Delivery))).all()}
            attempts = (await db.scalars(sa.select(DeliveryAttempt))).all()
            verification = await audit.verify(db)
        assert (rows["dlv_a"].status, rows["dlv_a"].response_id) == ("completed", "resp_1")
        assert rows["dlv_a"].transcript_verified is True
        assert (rows["dlv_b"].status, rows["dlv_b"].failure_reason) == ("failed", "refused")
        assert sorted((t.delivery_id, t.number, t.outcome) for t in attempts) == [
            ("dlv_a", 1, "completed"),
            ("dlv_b", 1, "failed"),
        ]
        assert await chain_of(maker) == [(r.action, r.delivery_id) for _, r in order]
        assert verification.ok
        assert sorted(wrote) == ["dlv_a", "dlv_b"]  # the final ones were signalled once written

    async def test_a_write_that_fails_does_not_take_the_other_records_with_it(
        self, app: FastAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        monkeypatch.setattr(recorders, "PERSIST_RETRIES", (0.0, 0.0))
        maker = maker_of(app)
        session_id = await live_session_with(maker, "dlv_a")
        play = Play("dlv_a")
        given_up: list[str] = []

        def broken(db: Session) -> None:  # jobs run in the batch's synchronous transaction
            raise RuntimeError("the disk is full")

        recorder = recorder_for(maker)
        recorder.attach()
        recorder.put(Entry(session_id, "sent", record=play.record(Status.SENT)))
        recorder.put(Entry(session_id, "a detail", job=broken, done=lambda: given_up.append("x")))
        recorder.put(Entry(session_id, "completed", record=play.record(Status.COMPLETED)))
        await recorder.written()
        recorder.detach()

        async with maker() as db:
            row = await db.get(Delivery, "dlv_a")
        assert row is not None
        assert row.status == "completed"
        assert await chain_of(maker) == [
            ("delivery.sent", "dlv_a"),
            ("delivery.completed", "dlv_a"),
        ]
        assert given_up == ["x"]  # told, so nobody waits for it forever
        assert "a record (a detail) could not be written" in caplog.text

    async def test_a_record_when_idle_is_written_at_once_and_a_stream_of_them_in_few_batches(
        self, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Gathering lengthened to 0.5 s, so that a busy machine's slow write is not taken for a
        # wait, nor a slow loop for records that did not gather.
        monkeypatch.setattr(recorders, "GATHER_S", 0.5)
        maker = maker_of(app)
        ids = [f"dlv_{i}" for i in range(30)]
        session_id = await live_session_with(maker, *ids)
        recorder = recorder_for(maker)
        recorder.attach()
        started = asyncio.get_running_loop().time()
        recorder.put(Entry(session_id, "sent", record=Play(ids[0]).record(Status.SENT)))
        await recorder.written()
        assert asyncio.get_running_loop().time() - started < 0.25  # no waiting to gather
        before = recorder.batches
        for delivery_id in ids[1:]:  # ~60 ms of records, one every 2 ms
            recorder.put(Entry(session_id, "sent", record=Play(delivery_id).record(Status.SENT)))
            await asyncio.sleep(0.002)
        await recorder.written()
        recorder.detach()
        # One transaction each would be 29; gathered for GATHER_S at a time, a handful.
        assert recorder.batches - before <= 8
        assert [subject for _, subject in await chain_of(maker)] == ids  # all, in order

    async def test_records_of_a_delivery_without_a_row_are_left_out(self, app: FastAPI) -> None:
        maker = maker_of(app)
        session_id = await live_session_with(maker, "dlv_a")
        recorder = recorder_for(maker)
        recorder.attach()
        for play in (Play("dlv_gone"), Play("dlv_a")):
            recorder.put(Entry(session_id, "sent", record=play.record(Status.SENT)))
        await recorder.written()
        recorder.detach()
        assert await chain_of(maker) == [("delivery.sent", "dlv_a")]

    async def test_stops_with_the_last_engine_using_it(self, app: FastAPI) -> None:
        recorder = recorder_for(maker_of(app))
        recorder.attach()
        recorder.attach()
        recorder.detach()
        await asyncio.sleep(0.01)
        writer = recorder._task
        assert writer is not None
        assert not writer.done()
        assert recorder_for(maker_of(app)) is recorder
        recorder.detach()
        await asyncio.wait_for(writer, 5)  # no task is left behind


class TestWriteGate:
    async def test_a_request_goes_before_a_batch_that_waited_longer(self) -> None:
        gate, order = WriteGate(), []

        async def take(kind: str) -> None:
            async with gate.request() if kind == "request" else gate.batch():
                order.append(kind)
                await asyncio.sleep(0.01)

        first = asyncio.create_task(take("request"))
        await asyncio.sleep(0)
        batch = asyncio.create_task(take("batch"))
        await asyncio.sleep(0)
        later = asyncio.create_task(take("request"))
        await asyncio.gather(first, batch, later)
        assert order == ["request", "request", "batch"]

    async def test_one_writer_at_a_time_unless_unguarded(self) -> None:
        for gate, most in ((WriteGate(), 1), (WriteGate(unguarded=True), 3)):
            inside, seen = 0, 0

            async def write(kind: str, gate: WriteGate = gate) -> None:
                nonlocal inside, seen
                async with gate.request() if kind == "request" else gate.batch():
                    inside += 1
                    seen = max(seen, inside)
                    await asyncio.sleep(0.01)
                    inside -= 1

            await asyncio.gather(write("request"), write("batch"), write("request"))
            assert seen == most
