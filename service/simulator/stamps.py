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
from dataclasses import dataclass
from typing import Any

MAX_SAMPLES = 1_000_000  # 100 sessions x 50 frames/s for over three minutes
MAX_RESPONSES = 100_000


_serial = itertools.count(1)


def stamped_id(prefix: str = "event", at: int | None = None) -> str:
    """An event id carrying the time it is made (or ``at``, a ``monotonic_ns`` the caller just
    read): ``event_<monotonic_ns>_<n>``, ``n`` counting the process's ids (unique without a
    random draw, which costs a system call per frame)."""
    return f"{prefix}_{time.monotonic_ns() if at is None else at}_{next(_serial)}"


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


@dataclass(slots=True)
class ResponseTiming:
    """One ``response.create`` the simulator answered: when its frame was received and when the
    first audio delta of its response was sent (the stamp in that delta's ``event_id``), both
    ``monotonic_ns``. ``metadata`` is the request's, so a caller can tell whose request it was."""

    session_id: str
    response_id: str
    metadata: dict[str, str] | None
    requested_ns: int
    first_audio_ns: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "response_id": self.response_id,
            "metadata": self.metadata,
            "requested_ns": self.requested_ns,
            "first_audio_ns": self.first_audio_ns,
        }


class ResponseTimings:
    """The timings of the responses requested so far, at most ``limit`` (later ones are only
    counted as ``dropped``)."""

    def __init__(self, limit: int = MAX_RESPONSES) -> None:
        self.items: list[ResponseTiming] = []
        self.dropped = 0
        self._limit = limit

    def add(self, timing: ResponseTiming) -> None:
        if len(self.items) < self._limit:
            self.items.append(timing)
        else:
            self.dropped += 1

    def clear(self) -> None:
        self.items = []
        self.dropped = 0
