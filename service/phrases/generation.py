"""The library's generation: a counter that every committed change to the phrase library raises.

A cache of the library (``service.phrases.cache``) labels what it holds with the generation it
read *before* reading the data, and serves it only while the database's generation is that one.
That is correct across processes because of two facts enforced here:

- Every transaction that writes a library row (phrases, tags, versions, texts, approvals) through
  the ORM raises the counter in that same transaction: a flush that touches such a row marks the
  session, and the mark becomes ``UPDATE ... SET value = value + 1`` just before the commit. A
  change and its raise commit together or not at all; nobody can see one without the other.
- The raise comes at the end of the transaction, as it commits. On PostgreSQL the row stays
  locked until the commit, so raises are serialized, and taking that lock last (after the audit
  chain's lock, which every library change takes) can never close a cycle of waits.

A write that bypassed the ORM (a bulk ``UPDATE`` through Core) would not raise it: the library
has none, and must not get one without setting the session's mark as the flush hook does.

Reading it: through a session (``read``) on any database; on a SQLite file synchronously
(``SqliteGeneration``), on PostgreSQL on a connection of its own (``PostgresGeneration``), which
is what makes checking it for every request cheap.
"""

from __future__ import annotations

import os
import sqlite3
from itertools import chain
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from service.phrases.models import (
    LibraryGeneration,
    Phrase,
    PhraseTag,
    PhraseVersion,
    VersionApproval,
    VersionText,
)

_CHANGED = "phrases.library_changed"
_LIBRARY = (Phrase, PhraseTag, PhraseVersion, VersionText, VersionApproval)
_ROW = LibraryGeneration.id == 1
_RAISE = sa.update(LibraryGeneration).where(_ROW).values(value=LibraryGeneration.value + 1)
_READ = sa.select(LibraryGeneration.value).where(_ROW)


async def read(db: AsyncSession) -> int | None:
    """The committed generation (None if its row is missing: then nothing may be cached)."""
    value = await db.scalar(_READ)
    return None if value is None else int(value)


class NotNow(Exception):
    """The quick read cannot answer at this moment: read through a session instead."""


class SqliteGeneration:
    """The generation of a SQLite file, read synchronously on the caller's thread.

    One row of a local file is a few microseconds to read, against some 400 us of CPU for a read
    through an async session (a thread hop per statement, and the session around them): cheap
    enough to do on the event loop for every request. The connection is opened on first use,
    only reads (``query_only``), never waits (a busy database raises ``NotNow``) and is closed
    when the app disposes its engine. Each statement runs in its own read transaction, so it sees
    every transaction committed before it began.
    """

    _SQL = "SELECT value FROM phrase_library_generation WHERE id = 1"

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    def of(cls, engine: AsyncEngine) -> SqliteGeneration | None:
        """A reader for ``engine``'s database if it is a SQLite file, else None."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        reader = cls(os.path.abspath(url.database))
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: reader.close())
        return reader

    def read(self) -> int | None:
        if self._closed:
            raise NotNow("the engine was disposed")
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(self._path, timeout=0, isolation_level=None)
                self._connection.execute("PRAGMA query_only = ON")
            row = self._connection.execute(self._SQL).fetchone()
        except sqlite3.Error as exc:  # busy, or the file is gone: the session will tell
            raise NotNow(str(exc)) from exc
        return None if row is None else int(row[0])

    def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class PostgresGeneration:
    """The generation of a PostgreSQL database, read on a connection of its own.

    A read through a pooled session costs some 400 us of CPU (checkout, ping, BEGIN, ROLLBACK);
    one prepared statement on an open asyncpg connection about 30 us. The cache's check already
    makes one read at a time, so one connection serves it. Opened on first use, reopened after a
    failure (meanwhile ``NotNow`` sends the check through a session), closed when the app
    disposes its engine."""

    _SQL = "SELECT value FROM phrase_library_generation WHERE id = 1"

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._connection: Any = None  # asyncpg.Connection
        self._closed = False

    @classmethod
    def of(cls, engine: AsyncEngine) -> PostgresGeneration | None:
        url = engine.url
        if url.get_backend_name() != "postgresql":
            return None
        reader = cls(url.set(drivername="postgresql").render_as_string(hide_password=False))
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: reader.close())
        return reader

    async def read(self) -> int | None:
        if self._closed:
            raise NotNow("the engine was disposed")
        try:
            if self._connection is None:
                self._connection = await asyncpg.connect(self._dsn, timeout=10)
            value = await self._connection.fetchval(self._SQL)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._drop()
            raise NotNow(f"{type(exc).__name__}: {exc}") from exc
        return None if value is None else int(value)

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.terminate()  # nothing is under way on it: no goodbye needed
            self._connection = None

    def close(self) -> None:
        self._closed = True
        self._drop()


def _touches_library(session: Session) -> bool:
    return any(isinstance(o, _LIBRARY) for o in chain(session.new, session.dirty, session.deleted))


@event.listens_for(Session, "before_flush")
def _note_library_writes(session: Session, _context: Any, _instances: Any) -> None:
    if _touches_library(session):
        session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _raise_generation(session: Session) -> None:
    # Objects still pending (the commit's own flush comes after this hook) count too.
    if session.info.pop(_CHANGED, False) or _touches_library(session):
        session.execute(_RAISE)


@event.listens_for(Session, "after_rollback")
def _forget_changes(session: Session) -> None:
    session.info.pop(_CHANGED, None)
