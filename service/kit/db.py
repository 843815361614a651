"""Engines and sessions. The one place that knows SQLite and PostgreSQL differ."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

READ_ONLY = "compliance_read_only"  # execution option: this transaction will not write
ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(url: str) -> sa.URL:
    """Turn the plain URL an operator writes into one with the async driver the service uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    return parsed.set(drivername=ASYNC_DRIVERS[backend])


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that does not exist (None for other databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if Path(parsed.database).exists() else parsed.database


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        engine = create_async_engine(target, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    # A database that does not answer fails a request within seconds (503), not a minute.
    # LIFO: the connection used last is the one taken next, so a busy service keeps reusing warm
    # connections and the idle ones are the ones checked (see _ping_when_idle).
    engine = create_async_engine(
        target,
        echo=echo,
        pool_timeout=10,
        pool_use_lifo=True,
        pool_recycle=RECYCLE_AFTER_S,
        connect_args={"timeout": 5},
    )
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE_S = 2.0  # a pooled connection unused this long is pinged before it is used
RECYCLE_AFTER_S = 1800  # and one this old is replaced (servers and proxies drop old ones)


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Reconnection safety without a round trip per checkout (``pool_pre_ping`` pings every
    time: one more round trip in every transaction, ~0.3-1 ms of a delivery request).

    A connection that sat in the pool for ``PING_AFTER_IDLE_S`` is pinged when taken out; a dead
    one is replaced there (the pool retries the checkout with a new connection). One used
    moments ago is trusted: if the database went away in between, the statement fails, the
    request gets a 503 (nothing was written) and the pool invalidates every connection it holds,
    so the next requests reconnect."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return  # a new connection, or one just used
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa_exc.DisconnectionError(f"a pooled connection was dead: {exc}") from exc
        if not alive:
            raise sa_exc.DisconnectionError("a pooled connection was dead")


def _configure_sqlite(engine: AsyncEngine | sa.Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for transactions that may write.

    SQLite allows one writer. With the driver's default deferred BEGIN a transaction that reads and
    then writes can fail at once with "database is locked" when another writer got there first; an
    immediate BEGIN waits (up to the connect timeout) instead, so concurrent requests serialize
    cleanly and the audit chain is appended by one transaction at a time. Read-only sessions
    (``READ_ONLY`` execution option) begin deferred: under WAL they never wait for a writer.

    Note for migration authors: foreign keys cannot be switched off inside a transaction, and
    every transaction here is one; a batch migration that rebuilds a parent table must do so
    without dropping it (or turn the pragma off on a connection before it begins).
    """

    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


T = TypeVar("T")


class Transactions:
    """Write transactions given as one synchronous function of a ``Session``: ``await
    run(work)`` begins, runs ``work``, commits and returns what it returned (rolls back and
    raises what it raised).

    On SQLite the whole transaction is one trip to a thread: the process's SQLite writer thread,
    on a synchronous connection of its own to the same file (configured as the engine's: WAL,
    BEGIN IMMEDIATE). Through the async driver every statement is three or four trips to the
    driver's thread and back (cursor, execute, fetch or close), each a wake-up of both threads
    and, on a busy service, a wait for the GIL: ten of them for a short transaction, about 2 ms
    of a delivery request on an idle machine (bench/delivery.py). On PostgreSQL, whose driver has
    no thread, and on an in-memory SQLite database, which a second connection would not see, it
    runs on a pooled connection of the engine as any transaction does."""

    def __init__(self, engine: AsyncEngine) -> None:
        # Weakly: the registry below is keyed by the engine (see transactions_for).
        self._engine = weakref.ref(engine)
        self._sqlite: sa.Engine | None = None
        url = engine.url
        in_memory = url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        if url.get_backend_name() == "sqlite" and not in_memory:  # a second connection to the file
            self._sqlite = sa.create_engine(
                engine.url.set(drivername="sqlite"),
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=1,
            )
            _configure_sqlite(self._sqlite)

    async def run(self, work: Callable[[Session], T]) -> T:
        if self._sqlite is None:
            engine = self._engine()
            if engine is None:
                raise RuntimeError("the engine of these transactions is gone")
            session = AsyncSession(engine, expire_on_commit=False, autoflush=False)
            async with session as db, db.begin():
                return await db.run_sync(work)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_sqlite_writer(), self._in_thread, work)

    def _in_thread(self, work: Callable[[Session], T]) -> T:
        assert self._sqlite is not None
        with Session(self._sqlite, expire_on_commit=False, autoflush=False) as db, db.begin():
            return work(db)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.dispose()


_transactions: weakref.WeakKeyDictionary[sa.Engine, Transactions] = weakref.WeakKeyDictionary()
_writer: ThreadPoolExecutor | None = None
_writer_made = threading.Lock()


def transactions_for(engine: AsyncEngine) -> Transactions:
    """The engine's ``Transactions``, made on first use and closed when the engine is disposed."""
    held = _transactions.get(engine.sync_engine)
    if held is None:
        held = _transactions[engine.sync_engine] = Transactions(engine)
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: held.close())
    return held


def _sqlite_writer() -> ThreadPoolExecutor:
    """One thread for the process: SQLite takes one writer at a time anyway."""
    global _writer
    with _writer_made:
        if _writer is None:
            _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        return _writer


def create_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, before the response.

    Used with ``Depends(scope="function")`` so that the commit happens before the response is sent:
    a client never sees a 2xx for a change that then failed to commit.
    """
    state = request.app.state
    maker: async_sessionmaker[AsyncSession] = (
        state.read_sessionmaker if request.method in SAFE_METHODS else state.sessionmaker
    )
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# The request's session, committed before the response is sent (see get_db).
DB = Annotated[AsyncSession, Depends(get_db, scope="function")]
