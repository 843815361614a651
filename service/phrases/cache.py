"""A per-process cache of what resolve and list read, that never answers from a superseded state.

Every entry is labelled with the library's generation (``service.phrases.generation``) as read
*before* the data it holds, in the same read transaction: the entry reflects at least every change
up to that generation. A request may use an entry only if its label equals the generation the
database holds *after the request arrived* (equal, not merely as high: a database restored to an
older state is not mistaken for a newer one). So a retirement, approval, supersession or edit
that was committed (in this process or any other on the same database) before a request came in
is always seen by it: at worst the entry is read again.

Reading the generation is one small query (``GenerationCheck``). On SQLite it is a synchronous
read of the file, a few microseconds, made by every request. On PostgreSQL it is a prepared
statement on a connection of its own, shared by every request waiting at the time: each waits
for the next read that starts after it arrived, so under load one query serves many requests
and no request ever trusts a read older than itself.

Effective windows need nothing here: entries hold the phrase's versions with their windows, not
an answer, and resolution applies the request's instant to them every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar, cast

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.kit.errors import ProblemError
from service.phrases import generation, resolution
from service.phrases.resolution import PhraseSnapshot

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_PHRASES = 10_000  # snapshots kept; the oldest goes first
MAX_PAGES = 1_000  # list pages kept (filters and cursors are the client's choice)


class GenerationCheck:
    """``current()``: the database's generation, from a read that began after the call did.

    With ``quick`` (a synchronous read: SQLite), every call reads for itself. Otherwise, or when
    ``quick`` cannot answer, calls that arrive while a read is under way share the next one."""

    def __init__(
        self,
        read: Callable[[], Awaitable[int | None]],
        quick: Callable[[], int | None] | None = None,
    ) -> None:
        self._read = read
        self._quick = quick
        self._next: asyncio.Future[int | None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reads = 0  # how many reads served how many calls: for tests and curiosity
        self.calls = 0

    async def current(self) -> int | None:
        self.calls += 1
        if self._quick is not None:
            try:
                return self._quick()
            except generation.NotNow:
                pass
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._run(), name="library-generation-check")
        # shield: a caller that gives up must not cancel the read the others wait for
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while self._next is not None:
            batch, self._next = self._next, None  # later callers wait for the next read
            self.reads += 1
            try:
                value = await self._read()
            except asyncio.CancelledError:
                batch.cancel()
                raise
            except Exception as exc:  # every waiter gets the failure, as it would uncached
                batch.set_exception(exc)
            else:
                batch.set_result(value)


def _retrieve(future: asyncio.Future[int | None]) -> None:
    """A failure nobody waited for any more is not an 'exception never retrieved'."""
    if not future.cancelled():
        future.exception()


class _Shelf(Generic[K, V]):
    """Values labelled with the generation they were read at, at most ``limit`` of them, and the
    reads under way (requests that miss the same entry at once share one read)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: dict[K, tuple[int, V]] = {}
        self.reading: dict[K, asyncio.Task[tuple[int | None, V]]] = {}

    def get(self, key: K, current: int) -> V | None:
        item = self._items.get(key)
        if item is None or item[0] != current:
            return None
        return item[1]

    def put(self, key: K, label: int, value: V) -> None:
        if key not in self._items and len(self._items) >= self._limit:
            del self._items[next(iter(self._items))]
        self._items[key] = (label, value)

    def keep_only(self, current: int) -> None:
        self._items = {k: item for k, item in self._items.items() if item[0] == current}

    def __len__(self) -> int:
        return len(self._items)


Read = Callable[[AsyncSession], Awaitable[V]]


class LibraryCache:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        quick: Callable[[], int | None] | None = None,
        direct: Callable[[], Awaitable[int | None]] | None = None,
        max_phrases: int = MAX_PHRASES,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._maker = sessionmaker
        self._direct = direct
        self.check = GenerationCheck(self._read_generation, quick)
        self._seen: int | None = None
        self._phrases: _Shelf[str, PhraseSnapshot] = _Shelf(max_phrases)
        self._pages: _Shelf[Hashable, object] = _Shelf(max_pages)
        self.loads = 0  # reads of entries: for tests and curiosity

    async def _read_generation(self) -> int | None:
        if self._direct is not None:
            try:
                return await self._direct()
            except generation.NotNow:
                pass
        async with self._maker() as db:
            return await generation.read(db)

    async def phrase(self, key: str) -> PhraseSnapshot:
        """What resolution needs of phrase ``key``, as of no earlier than this call."""
        return await self._get(self._phrases, key, partial(_load_phrase, key))

    async def page(self, key: Hashable, build: Read[V]) -> V:
        """``build``'s result for ``key`` (a list page, by its filters), as of no earlier than
        this call. ``build`` reads through the session it is given and must depend on nothing
        but the library and ``key``."""
        return cast(V, await self._get(self._pages, key, build))

    async def _get(self, shelf: _Shelf[K, V], key: K, read: Read[V]) -> V:
        current = await self.check.current()
        if current is None:  # no generation to compare with: nothing can be trusted
            return (await self._read(read))[1]
        if current != self._seen:
            self._seen = current
            self._phrases.keep_only(current)
            self._pages.keep_only(current)
        held = shelf.get(key, current)
        if held is not None:
            return held
        task = shelf.reading.get(key)
        if task is None:  # a read of our own, begun after this request arrived
            task = asyncio.create_task(self._read(read), name="library-cache-read")
            shelf.reading[key] = task
            task.add_done_callback(partial(_read_done, shelf, key))
            label, value = await asyncio.shield(task)
        else:  # another request's read, which may have begun before this one arrived
            try:
                label, value = await asyncio.shield(task)
            except ProblemError:  # e.g. no such phrase: perhaps not any more; see for ourselves
                label, value = await self._read(read)
            if label != current:  # it may have missed a change committed before we arrived
                label, value = await self._read(read)
        if label is not None:
            shelf.put(key, label, value)
        return value

    async def _read(self, read: Read[V]) -> tuple[int | None, V]:
        self.loads += 1
        async with self._maker() as db:
            label = await generation.read(db)  # first: the data read next is at least this new
            return label, await read(db)


async def _load_phrase(key: str, db: AsyncSession) -> PhraseSnapshot:
    return await resolution.load(db, key)


def _read_done(shelf: _Shelf[K, V], key: K, task: asyncio.Task[tuple[int | None, V]]) -> None:
    if shelf.reading.get(key) is task:
        del shelf.reading[key]
    if not task.cancelled():
        task.exception()  # a failure nobody waits for any more is not "never retrieved"


def library_cache(request: Request) -> LibraryCache:
    """The app's cache, made on first use. It reads entries through the app's pool; its one
    connection of its own (for the generation) is closed when the app disposes its engine."""
    state = request.app.state
    cache: LibraryCache | None = getattr(state, "library_cache", None)
    if cache is None:
        engine: AsyncEngine = state.sessionmaker.kw["bind"]
        quick = generation.SqliteGeneration.of(engine)
        direct = generation.PostgresGeneration.of(engine)
        cache = state.library_cache = LibraryCache(
            state.read_sessionmaker,
            quick=quick.read if quick else None,
            direct=direct.read if direct else None,
        )
    return cache
