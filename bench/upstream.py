"""The benchmarks' upstream: the Voice Live simulator with ``stamp_events`` on, in its own process.

Prints its WebSocket URL alone on stdout once listening; on SIGTERM or SIGINT it stops and writes
to ``--out`` (JSON) the one-way latencies of the stamped caller audio it received (bench/relay.py)
and when each ``response.create`` arrived and its first audio left (bench/delivery.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from service.simulator import Simulator, SimulatorConfig


async def serve() -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with Simulator(SimulatorConfig(port=0, speed=1.0, stamp_events=True)) as sim:
        print(sim.url, flush=True)
        await stop.wait()
        summary = sim.latencies.summary()  # taken before the connections are torn down
        appends = sum(session.audio_appends for session in sim.sessions)
    timings = [t.as_dict() for t in sim.response_timings.items]
    return {
        "up": summary,
        "sessions": len(sim.sessions),
        "appends": appends,
        "timings": timings,  # when each response.create arrived, its first audio left
        "dropped": sim.response_timings.dropped,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        import uvloop  # uvicorn[standard] brings it; the harness should cost as little as it can
    except ImportError:
        stats = asyncio.run(serve())
    else:
        stats = uvloop.run(serve())
    args.out.write_text(json.dumps(stats))


if __name__ == "__main__":
    main()
