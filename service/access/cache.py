"""Authenticated API keys kept in memory for a few seconds, so that a request does not have to
look its key up in the database.

How long a revoked key can still work:

- in the process that revoked it: not at all. The revocation forgets the key as it commits
  (before the admin's response is sent), and a lookup that read the key before that commit and
  finishes after it is not kept (``epoch``).
- in every other process on the same database: at most ``KEY_CACHE_SECONDS``, counted from the
  moment that process read the key (it reads it again once its entry is that old).

Only keys that authenticated are kept: an unknown key is looked up every time, so a key created
in one process works at once in all of them. A key's roles never change, so nothing else can go
stale.

Keys in use are read again in the background (``KeyCache.start``, called by the app's lifespan), all
in one query, before their entries are half their time old: an agent that sends a request every
few seconds would otherwise find its entry run out every time and wait for the database (2 of
the 7 ms of a delivery request, bench/delivery.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from starlette.datastructures import State

from service.access.service import Caller

KEY_CACHE_SECONDS = 2.0
KEEP_FRESH_SECONDS = 60.0  # a key used within this long is read again before it runs out
MAX_KEYS = 10_000
_AFTER_COMMIT = "access.after_commit"

log = logging.getLogger("service.access")

Lookup = Callable[[], Awaitable[Caller | None]]
LookupMany = Callable[[list[str]], Awaitable[dict[str, Caller]]]  # hashes -> callers not revoked


class KeyCache:
    """``caller(key_hash, lookup)``: who holds a key, from memory or else from ``lookup``.

    Requests that miss the same key at once share one lookup, and a key past half its time is
    looked up again in the background while it is still served, so under load no request waits
    for the database when an entry runs out (which was a pause of tens of ms: every connection
    missing at once). A lookup, shared or in the background, counts only if no key was revoked
    here since it began (``epoch``)."""

    def __init__(self, ttl: float = KEY_CACHE_SECONDS, max_keys: int = MAX_KEYS) -> None:
        self.ttl = ttl
        self._max = max_keys
        self._keys: dict[str, tuple[Caller, float]] = {}  # key hash -> (caller, when read)
        self._epoch = 0  # raised by every forget: lookups begun before it are not kept
        self._lookups: dict[str, tuple[int, asyncio.Task[Caller | None]]] = {}
        self._used: dict[str, float] = {}  # key hash -> when a request last used it
        self.keep_fresh_for = KEEP_FRESH_SECONDS
        self.lookups = 0  # for tests and curiosity
        self.refreshes = 0
        self._refresher: asyncio.Task[None] | None = None

    async def caller(self, key_hash: str, lookup: Lookup) -> Caller | None:
        held = self._keys.get(key_hash)
        if held is not None:
            caller, read_at = held
            now = time.monotonic()
            age = now - read_at
            if age < self.ttl:
                self._used[key_hash] = now
                if age >= self.ttl / 2 and key_hash not in self._lookups:
                    self._start(key_hash, lookup)  # refresh ahead; this request goes on
                return caller
            del self._keys[key_hash]
        under_way = self._lookups.get(key_hash)
        if under_way is not None and under_way[0] == self._epoch:
            shared = await asyncio.shield(under_way[1])
            if under_way[0] == self._epoch:
                return shared
        # None under way, or begun before a revocation here: a lookup of this request's own.
        return await asyncio.shield(self._start(key_hash, lookup))

    def _start(self, key_hash: str, lookup: Lookup) -> asyncio.Task[Caller | None]:
        epoch = self._epoch
        task = asyncio.create_task(self._look_up(key_hash, lookup, epoch), name="api-key-lookup")
        self._lookups[key_hash] = (epoch, task)
        task.add_done_callback(partial(self._done, key_hash))
        return task

    async def _look_up(self, key_hash: str, lookup: Lookup, epoch: int) -> Caller | None:
        read_at = time.monotonic()
        self.lookups += 1
        caller = await lookup()
        if epoch != self._epoch:
            return caller  # a key was revoked here meanwhile: this read may predate it
        if caller is None:
            self._drop(key_hash)  # revoked elsewhere, as a refresh may find out
        elif self.ttl > 0:
            if key_hash not in self._keys and len(self._keys) >= self._max:
                self._drop(next(iter(self._keys)))
            self._keys[key_hash] = (caller, read_at)
            self._used[key_hash] = read_at
        return caller

    def _drop(self, key_hash: str) -> None:
        self._keys.pop(key_hash, None)
        self._used.pop(key_hash, None)

    def _done(self, key_hash: str, task: asyncio.Task[Caller | None]) -> None:
        if self._lookups.get(key_hash, (0, None))[1] is task:
            del self._lookups[key_hash]
        if not task.cancelled() and task.exception() is not None:
            # Its waiters got the failure; a refresh nobody waited for only leaves the entry to
            # run out, and the next request looks the key up itself.
            log.debug("API key lookup failed: %s", type(task.exception()).__name__)

    def held(self, key_hash: str) -> Caller | None:
        """The caller kept for ``key_hash`` and still within its time, without any lookup."""
        held = self._keys.get(key_hash)
        if held is None or time.monotonic() - held[1] >= self.ttl:
            return None
        return held[0]

    def __len__(self) -> int:
        return len(self._keys)

    def forget(self, key_hash: str) -> None:
        self._epoch += 1
        self._drop(key_hash)

    # --- keeping the keys in use fresh ----------------------------------------------------------

    def start(self, lookup_many: LookupMany) -> None:
        """Read the keys in use again every third of the TTL until ``stop``."""
        self._refresher = asyncio.create_task(self._keep_fresh(lookup_many), name="api-key-refresh")

    async def stop(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _keep_fresh(self, lookup_many: LookupMany) -> None:
        while True:
            await asyncio.sleep(max(self.ttl / 3, 0.05))
            try:
                await self.refresh(lookup_many)
            except Exception as exc:
                # The entries run out in their time and requests look their keys up themselves
                # (a 503 while the database is away): nothing is served past its bound.
                log.debug("API keys could not be read again: %s", type(exc).__name__)

    async def refresh(self, lookup_many: LookupMany) -> None:
        """Read again, in one lookup, every held key a request used within ``keep_fresh_for``;
        a key the database no longer has (revoked elsewhere) is dropped. Keys unused that long
        are left to run out. Like any lookup, it counts only if no key was revoked here
        meanwhile."""
        now = time.monotonic()
        for key_hash in [h for h, used in self._used.items() if now - used >= self.keep_fresh_for]:
            del self._used[key_hash]
        hashes = [h for h in self._used if h in self._keys]
        if not hashes or self.ttl <= 0:
            return
        epoch, read_at = self._epoch, time.monotonic()
        found = await lookup_many(hashes)
        self.refreshes += 1
        if epoch != self._epoch:
            return  # a key was revoked here meanwhile: this read may predate it
        for key_hash in hashes:
            caller = found.get(key_hash)
            if caller is None:
                self._drop(key_hash)
            elif key_hash in self._keys:
                self._keys[key_hash] = (caller, read_at)


def key_cache(state: State) -> KeyCache:
    """The app's key cache (made by the lifespan; on first use where no lifespan ran)."""
    cache: KeyCache | None = getattr(state, "key_cache", None)
    if cache is None:
        cache = state.key_cache = KeyCache()
    return cache


def after_commit(db: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the transaction of ``db`` has committed (never if it rolls back)."""
    db.sync_session.info.setdefault(_AFTER_COMMIT, []).append(action)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for action in session.info.pop(_AFTER_COMMIT, []):
        action()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session, *_: Any) -> None:
    session.info.pop(_AFTER_COMMIT, None)
