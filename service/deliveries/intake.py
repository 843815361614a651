"""Group commit of delivery requests: requests that wait at the same moment share one transaction.

A delivery request must commit its row and its ``delivery.queued`` audit event before its
``response.create`` goes out. Committed one by one, each request paid a whole transaction (on
PostgreSQL: BEGIN, the row, the audit chain's lock, the chain's insert, COMMIT; on SQLite as many
hops to the driver's thread, one writer at a time), and under a burst each waited for all those
before it. Here a request hands its row to the database's intake and waits; the intake writes
whatever has gathered meanwhile as one transaction: one multi-row INSERT, one link of the audit
chain for all their events, one COMMIT. Nothing waits on purpose: a request that finds the intake
idle is written at once, alone; the batch only grows while a transaction is under way.

Each request is still answered only once its own row and event are committed, and in the order
they arrived (the audit events are linked in that order). When a batch fails for a reason of its
own (a duplicate Idempotency-Key, a value the database refuses), each of its requests is written
again alone, so one bad request never takes the others down; when the database cannot be reached,
every request of the batch gets that error (a 503), as it would have alone.

A request that is cancelled while it waits (its client went away) may still be committed: its
delivery is then sent anyway, because its record says it is queued.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from service.audit import service as audit
from service.deliveries import service
from service.deliveries.models import Delivery
from service.deliveries.recorder import DatabaseWriter, writer_for
from service.kit.actor import Actor
from service.kit.errors import database_unreachable

log = logging.getLogger("service.deliveries")

BATCH_MAX = 200  # requests in one transaction
QUEUED = "delivery.queued"

_INSERT = sa.insert(cast(sa.Table, Delivery.__table__))


@dataclass(eq=False)
class Admission:
    """One request's delivery row (its columns) and who asked for it."""

    actor: Actor
    values: dict[str, Any]
    # Called when the request stopped waiting (cancelled) but its row was committed.
    orphaned: Callable[[], None] | None = None
    future: asyncio.Future[None] = field(init=False)


_intakes: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], Intake]
_intakes = weakref.WeakKeyDictionary()


def intake_for(maker: async_sessionmaker[AsyncSession]) -> Intake:
    return writer_for(_intakes, Intake, maker)


class Intake(DatabaseWriter):
    """The request queue of one database, written by one task while it is not empty."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(maker)
        self._queue: deque[Admission] = deque()
        self._task: asyncio.Task[None] | None = None

    async def admit(self, admission: Admission) -> None:
        """Returns once ``admission``'s row and its audit event are committed; raises what
        writing it raised (an ``IntegrityError`` when its Idempotency-Key is taken)."""
        admission.future = self._loop.create_future()
        self._queue.append(admission)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="delivery intake")
            self._task.add_done_callback(self._abandon)
        await admission.future

    async def _run(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
            try:
                await self._write(batch)
            except BaseException:  # cancelled (the app stops): nobody is left waiting
                for admission in batch:
                    admission.future.cancel()
                raise

    def _abandon(self, writer: asyncio.Task[None]) -> None:
        """The writer stopped without emptying the queue (cancelled, perhaps before it ever
        ran): what waits in it is cancelled too, rather than waiting for ever."""
        if writer.cancelled() or writer.exception() is not None:
            while self._queue:
                self._queue.popleft().future.cancel()

    async def _write(self, batch: list[Admission]) -> None:
        try:
            await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1 or database_unreachable(exc):
                for admission in batch:
                    self._settle(admission, exc)
                return
            # Something of one request's own: each alone, so the others are written.
            log.info("a batch of %d delivery requests failed (%s); each alone", len(batch), exc)
            for admission in batch:
                try:
                    await self._transaction([admission])
                except Exception as alone:
                    self._settle(admission, alone)
                else:
                    self._settle(admission, None)
            return
        for admission in batch:
            self._settle(admission, None)

    async def _transaction(self, batch: list[Admission]) -> None:
        """The rows first, the audit chain last (the order every writer of the chain follows,
        see ``audit.appended_last``); one commit, in one trip to the database (``Transactions``).
        One writer at a time on SQLite."""
        rows = [a.values for a in batch]
        events = [
            audit.new_event(a.actor, QUEUED, "delivery", row["id"], service.queued_details(row))
            for a, row in zip(batch, rows, strict=True)
        ]

        def write(db: Session) -> None:
            db.execute(_INSERT, rows)
            audit.link_now(db, events)

        async with self.gate.request():
            await self.transactions.run(write)
        self.batches += 1

    def _settle(self, admission: Admission, error: BaseException | None) -> None:
        future = admission.future
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        elif error is None and admission.orphaned is not None:
            # Its request is gone, its record says queued: it goes out all the same.
            self._loop.call_soon(admission.orphaned)
