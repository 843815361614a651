"""Rate and concurrency limits held in this process's memory: each replica counts for itself.

``RateLimit`` is GCRA (the generic cell rate algorithm): a token bucket of ``burst`` tokens
refilled at ``per_second``, kept as one number per key, the theoretical arrival time ``tat`` of
its next request. A request at ``now`` conforms when ``max(tat, now) + interval`` is no more than
``burst`` intervals ahead of ``now``; it then becomes the new ``tat``. A refused request changes
nothing, and how long it must wait is exact, so ``Retry-After`` is too. A key whose ``tat`` has
passed is the same as a key never seen, so it is forgotten: memory holds only the keys busy within
the last ``burst / per_second`` seconds, and never more than ``max_keys``.

``SessionLimit`` counts what a key holds open now: reservations (a handshake under way, or a
whole relayed connection), and sessions kept past their request (attached ones), for as long as
``alive`` says they are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from starlette.datastructures import State

from service.settings import Settings

Clock = Callable[[], float]

MAX_KEYS = 100_000
_SWEEP_FIRST = 1024  # entries before the first sweep for idle keys
_SLACK = 1e-9  # float sums of intervals must not refuse a request that is exactly on time


def retry_after_seconds(wait: float) -> int:
    """``Retry-After`` in whole seconds: never earlier than the wait, never 0."""
    return max(1, math.ceil(wait - _SLACK))


class RateLimit:
    """``take(key)``: count a request of ``key`` if it may make one now (0.0), or say how many
    seconds it must wait (counting nothing). ``per_second`` 0 disables the limit."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        clock: Clock = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.enabled = per_second > 0 and burst > 0
        self._interval = 1 / per_second if self.enabled else 0.0
        self._tolerance = burst * self._interval
        self._clock = clock
        self._max = max_keys
        self._sweep_at = min(_SWEEP_FIRST, max_keys)
        self._tat: dict[str, float] = {}  # least recently counted first
        self.refused = 0  # for tests and curiosity

    def take(self, key: str) -> float:
        if not self.enabled:
            return 0.0
        now = self._clock()
        tat = max(self._tat.pop(key, now), now) + self._interval
        if (over := self._over(tat, now)) > 0:
            self._tat[key] = tat - self._interval  # as it was (now last counted: kept longest)
            self.refused += 1
            return over
        self._tat[key] = tat
        if len(self._tat) > self._sweep_at:
            self._sweep(now)
        return 0.0

    def give_back(self, key: str) -> None:
        """Undo one ``take`` that was counted: what it counted turned out not to count."""
        tat = self._tat.get(key)
        if tat is not None:
            tat -= self._interval
            if tat > self._clock():
                self._tat[key] = tat
            else:
                del self._tat[key]

    def _over(self, tat: float, now: float) -> float:
        over = tat - now - self._tolerance
        return over if over > _SLACK else 0.0

    def _sweep(self, now: float) -> None:
        self._tat = {key: tat for key, tat in self._tat.items() if tat > now}
        if len(self._tat) > self._max:
            # Every key is busy (a flood of addresses): forget the least recently counted tenth,
            # which then start afresh; better than memory without bound.
            keep = self._max - self._max // 10
            for key in list(self._tat)[: len(self._tat) - keep]:
                del self._tat[key]
        self._sweep_at = min(self._max, max(_SWEEP_FIRST, 2 * len(self._tat)))

    def __len__(self) -> int:
        return len(self._tat)


class SessionLimit:
    """At most ``per_key`` sessions open per key (0: no limit). ``full(key)`` asks;
    ``reserve(key)`` counts one until the reservation is left, or, after ``keep(session_id)``,
    until ``alive(session_id)`` is false."""

    def __init__(self, per_key: int, alive: Callable[[str], bool]) -> None:
        self.per_key = per_key
        self._alive = alive
        self._reserved: dict[str, int] = {}
        self._kept: dict[str, set[str]] = {}
        self._kept_since_prune = 0

    def count(self, key: str) -> int:
        kept = self._kept.get(key)
        if kept is not None:
            kept.difference_update([s for s in kept if not self._alive(s)])
            if not kept:
                del self._kept[key]
        return self._reserved.get(key, 0) + len(self._kept.get(key, ()))

    def full(self, key: str) -> bool:
        return self.per_key > 0 and self.count(key) >= self.per_key

    def reserve(self, key: str) -> Reservation:
        self._reserved[key] = self._reserved.get(key, 0) + 1
        return Reservation(self, key)

    def _release(self, key: str) -> None:
        left = self._reserved[key] - 1
        if left:
            self._reserved[key] = left
        else:
            del self._reserved[key]

    def _keep(self, key: str, session_id: str) -> None:
        self._kept.setdefault(key, set()).add(session_id)
        self._kept_since_prune += 1
        if self._kept_since_prune >= _SWEEP_FIRST:  # keys that never come back are pruned too
            self._kept_since_prune = 0
            for held in list(self._kept):
                self.count(held)

    def __len__(self) -> int:
        """Keys with anything counted (kept sessions possibly ended, until pruned)."""
        return len(self._reserved.keys() | self._kept.keys())


class Reservation:
    """One session of a key counted while the ``with`` block runs; ``keep`` counts it on for as
    long as the session is alive."""

    def __init__(self, limit: SessionLimit, key: str) -> None:
        self._limit = limit
        self._key = key
        self._released = False

    def keep(self, session_id: str) -> None:
        self._limit._keep(self._key, session_id)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limit._release(self._key)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


@dataclass(frozen=True)
class Limits:
    """The limits of one app (one replica), made from its settings on first use."""

    settings: Settings
    requests: RateLimit  # authenticated API requests (and control channel handshakes), per key
    failures: RateLimit  # unknown or revoked keys presented, per client address
    session_opens: RateLimit  # live sessions opened, per key
    sessions: SessionLimit  # live sessions held at once, per key

    @classmethod
    def of(cls, settings: Settings, alive: Callable[[str], bool]) -> Limits:
        return cls(
            settings,
            RateLimit(settings.rate_limit_per_second, settings.rate_limit_burst),
            RateLimit(settings.auth_failure_limit_per_second, settings.auth_failure_limit_burst),
            RateLimit(settings.session_rate_limit_per_second, settings.session_rate_limit_burst),
            SessionLimit(settings.session_limit_per_key, alive),
        )


def limits(state: State) -> Limits:
    """The app's limits, made on first use (after the lifespan has made ``state.live``)."""
    held: Limits | None = getattr(state, "limits", None)
    if held is None:
        # ``state.live`` read at each call: a lifespan run again makes a new registry.
        held = state.limits = Limits.of(state.settings, lambda sid: state.live.get(sid) is not None)
    return held
