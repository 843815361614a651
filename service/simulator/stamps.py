"""Send stamps in event ids, for latency benchmarks (``SimulatorConfig.stamp_events``).

``time.monotonic_ns()`` reads CLOCK_MONOTONIC, which on Linux is one clock for every process on
the machine: a stamp written by one process can be subtracted from another process's clock. The
stamp rides in ``event_id`` (``<prefix>_<monotonic_ns>_<anything>``), so a frame stays a valid
Voice Live event and nobody on the path has to parse anything new.
"""

from __future__ import annotations

import itertools
import math
import time
from array import array
from typing import Any

MAX_SAMPLES = 1_000_000  # 100 sessions x 50 frames/s for over three minutes


_serial = itertools.count(1)


def stamped_id(prefix: str = "event") -> str:
    """An event id carrying the time it is made: ``event_<monotonic_ns>_<n>``, ``n`` counting
    the process's ids (unique without a random draw, which costs a system call per frame)."""
    return f"{prefix}_{time.monotonic_ns()}_{next(_serial)}"


def stamp_of(event_id: object) -> int | None:
    """The ``monotonic_ns`` send time an id carries, or None when it carries none."""
    if not isinstance(event_id, str):
        return None
    parts = event_id.split("_", 2)
    if len(parts) < 3 or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    return int(parts[1])


class Latencies:
    """One-way latencies (ns) of the stamped caller audio frames received; at most ``limit`` are
    kept (later ones are only counted as ``dropped``) so a long run cannot exhaust memory."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.samples: array[int] = array("q")
        self.dropped = 0
        self._limit = limit

    def add(self, nanoseconds: int) -> None:
        if len(self.samples) < self._limit:
            self.samples.append(nanoseconds)
        else:
            self.dropped += 1

    def clear(self) -> None:
        self.samples = array("q")
        self.dropped = 0

    def summary(self) -> dict[str, Any]:
        """Count and percentiles in milliseconds (nearest rank), as JSON-ready values."""
        ordered = sorted(self.samples)
        result: dict[str, Any] = {"count": len(ordered), "dropped": self.dropped}
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1)):
            rank = max(math.ceil(q * len(ordered)) - 1, 0)
            result[name] = ordered[rank] / 1e6 if ordered else None
        return result
