"""One writer per database for the delivery records of every live session, and the gate that
keeps delivery writes from competing.

Every transition of every delivery is a record and an audit event. Written as one transaction
each, from one task per session, they made hundreds of small write transactions a second that
queued for the one SQLite writer (whose busy handler sleeps 1, 2, 5 ... 100 ms between tries) or
for the audit chain's lock on PostgreSQL, and a delivery request, which must commit its record
before its words go out, waited behind them (bench/delivery.py: seconds at 100 sessions).

Here the records of all sessions wait in one queue, in the order their engines decided them, and
are written in batches: one transaction and one link of the audit chain for many records.

On SQLite the ``WriteGate`` lets one delivery transaction at a time reach the database, requests
first: a batch waits while a request does; the next writer is woken as soon as the last one
commits, where SQLite's busy handler would sleep. Each is one trip to the database
(``kit.db.Transactions``), so the gate is held for as long as the database works, no longer.
PostgreSQL needs no gate: writers overlap until the audit chain's lock, which a batch takes last
(see ``audit.appended_last``) and holds only until it commits, so a request waits for less there
than for a whole batch behind a gate.

The engines are given only the sessionmaker, so the recorder is found by it (``recorder_for``);
it runs while engines use it and stops with the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from service.deliveries import service
from service.deliveries.tracking import Record
from service.kit.db import Transactions, transactions_for

log = logging.getLogger("service.deliveries")

Job = Callable[[Session], None]  # a write of its own in a batch's transaction (synchronous)
PERSIST_RETRIES = (0.1, 0.5, 2.0)  # pauses between attempts to write one record alone
BATCH_MAX = 100  # records in one transaction
# Under load, a batch at most this often: each trip holds the one SQLite writer (and the GIL while
# SQLAlchemy works), and requests wait behind it; fewer, larger batches leave it free more often.
# A record alone, when the recorder was idle, is written at once.
GATHER_S = 0.02


class WriteGate:
    """Lets one delivery write transaction at a time through; ``request`` ones go first.
    ``unguarded``: everything goes through at once (a database that takes concurrent writers)."""

    def __init__(self, *, unguarded: bool = False) -> None:
        self.unguarded = unguarded
        self._lock = asyncio.Lock()
        self._requests = 0
        self._no_requests = asyncio.Event()
        self._no_requests.set()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        if self.unguarded:
            yield
            return
        self._requests += 1
        self._no_requests.clear()
        try:
            async with self._lock:
                yield
        finally:
            self._requests -= 1
            if not self._requests:
                self._no_requests.set()

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        if self.unguarded:
            yield
            return
        while True:
            await self._no_requests.wait()
            await self._lock.acquire()
            if not self._requests:
                break
            self._lock.release()  # a request came meanwhile: it goes first
        try:
            yield
        finally:
            self._lock.release()


_gates: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], WriteGate]
_gates = weakref.WeakKeyDictionary()
_recorders: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], Recorder]
_recorders = weakref.WeakKeyDictionary()


def gate_for(maker: async_sessionmaker[AsyncSession]) -> WriteGate:
    gate = _gates.get(maker)
    if gate is None:
        bind = maker.kw.get("bind")
        single_writer = bind is None or bind.dialect.name == "sqlite"
        gate = _gates[maker] = WriteGate(unguarded=not single_writer)
    return gate


def recorder_for(maker: async_sessionmaker[AsyncSession]) -> Recorder:
    return writer_for(_recorders, Recorder, maker)


class DatabaseWriter:
    """What the request intake and the recorder share: one of each per sessionmaker and event
    loop, passing the write gate, one trip to the database per transaction."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = weakref.ref(maker)  # an app that is gone takes its writers with it
        self.gate = gate_for(maker)
        self.transactions = transactions_of(maker)
        self._loop = asyncio.get_running_loop()
        self.batches = 0  # transactions written: for tests and curiosity

    @property
    def usable(self) -> bool:
        """False once its event loop is not the running one (a test's loop that ended)."""
        return self._loop is asyncio.get_running_loop() and self._maker() is not None


W = TypeVar("W", bound=DatabaseWriter)


def writer_for(
    registry: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], W],
    kind: type[W],
    maker: async_sessionmaker[AsyncSession],
) -> W:
    """The writer of ``kind`` for ``maker``, made on first use (and again for a new loop)."""
    writer = registry.get(maker)
    if writer is None or not writer.usable:
        writer = registry[maker] = kind(maker)
    return writer


@dataclass(frozen=True)
class Entry:
    """A delivery's transition (``record``) or another write of a session (``job``)."""

    session_id: str
    label: str  # what it writes, for the log
    record: Record | None = None
    job: Job | None = None
    done: Callable[[], None] | None = None  # called once it is written (or given up on)

    def write(self, db: Session) -> None:
        """Alone: a record as a batch of one."""
        if self.record is not None:
            service.persist(db, [(self.session_id, self.record)])
        if self.job is not None:
            self.job(db)


class Recorder(DatabaseWriter):
    """The record queue of one database. Holds its sessionmaker only while it runs, so that an
    app that is gone takes its recorder with it."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(maker)
        self._queue: deque[Entry] = deque()
        self._wake = asyncio.Event()
        self._users = 0
        self._task: asyncio.Task[None] | None = None

    def attach(self) -> None:
        """An engine will put records here until it ``detach``es."""
        self._users += 1
        if self._task is None or self._task.done():
            maker = self._maker()
            assert maker is not None
            self._task = asyncio.create_task(self._run(maker), name="delivery recorder")

    def detach(self) -> None:
        self._users -= 1
        self._wake.set()  # the writer stops once nobody uses it and nothing waits

    def put(self, entry: Entry) -> None:
        self._queue.append(entry)
        self._wake.set()

    async def written(self) -> None:
        """Returns once everything put here so far is written (or given up on)."""
        done = asyncio.Event()
        self.put(Entry("", "a barrier", done=done.set))
        await done.wait()

    async def _run(self, maker: async_sessionmaker[AsyncSession]) -> None:
        last = -GATHER_S
        while self._queue or self._users > 0:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            pause = last + GATHER_S - time.monotonic()
            if pause > 0 and self._users > 0:  # busy: let the next batch gather a while
                await asyncio.sleep(pause)
            await self._write_batch(maker)
            last = time.monotonic()

    async def _write_batch(self, maker: async_sessionmaker[AsyncSession]) -> None:
        batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
        records = [(e.session_id, e.record) for e in batch if e.record is not None]
        jobs = [e.job for e in batch if e.job is not None]

        def write(db: Session) -> None:
            for job in jobs:  # other tables': no need to wait for the records
                job(db)
            service.persist(db, records)

        try:
            async with self.gate.batch():
                await self.transactions.run(write)
            self.batches += 1
        except Exception:
            # One record that cannot be written must not take the others with it: each alone.
            for entry in batch:
                await write_alone(maker, entry, self.gate)
            return
        for entry in batch:
            if entry.done is not None:
                entry.done()


def transactions_of(maker: async_sessionmaker[AsyncSession]) -> Transactions:
    bind = maker.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return transactions_for(bind)


async def write_alone(
    maker: async_sessionmaker[AsyncSession], entry: Entry, gate: WriteGate
) -> None:
    """One record in its own transaction, tried again after a pause when it fails."""
    for pause in (*PERSIST_RETRIES, None):
        try:
            async with gate.batch():
                await transactions_of(maker).run(entry.write)
            break
        except Exception:
            if pause is None:
                # The conversation goes on; the session's end gives any delivery left
                # without a final state one (sessions.end_unfinished).
                log.exception(
                    "session %s: a record (%s) could not be written", entry.session_id, entry.label
                )
                break
            await asyncio.sleep(pause)
    if entry.done is not None:
        entry.done()
