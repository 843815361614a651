"""What every benchmark here shares: measuring processes, the machine, starting and stopping
processes, and appending a dated section to bench/RESULTS.md."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
TICK = os.sysconf("SC_CLK_TCK")


# A benchmark is one client loading the service on purpose: its per-key limits (see README, "Rate
# limits") would measure the limiter, not the service.
UNLIMITED = {
    "COMPLIANCE_RATE_LIMIT_PER_SECOND": "0",
    "COMPLIANCE_SESSION_RATE_LIMIT_PER_SECOND": "0",
    "COMPLIANCE_SESSION_LIMIT_PER_KEY": "0",
}


# --- measuring processes --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_ticks() -> list[int]:
    """user nice system idle iowait irq softirq steal, summed over every CPU."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    python = platform.python_version()
    return (
        f"{os.cpu_count()} CPUs, {model}, Linux {platform.release()}, Python {python}; "
        f"reference loop {speed_probe_ms():.0f} ms"
    )


def speed_probe_ms() -> float:
    """Median time of a fixed pure-Python workload: the same "model name" has been seen here
    running twice as fast one day as another, and this tells such runs apart."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        blob = json.dumps([{"type": "frame", "n": i, "delta": "x" * 64} for i in range(20_000)])
        sum(len(item["delta"]) * item["n"] for item in json.loads(blob))
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank, as the simulator's summary computes it."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def pin(pid: int, cpus: set[int] | None) -> None:
    """Every thread of ``pid`` onto ``cpus`` (``--pin``); threads started later inherit it."""
    if cpus is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes ------------------------------------------------------------------------------------


@dataclass
class Procs:
    started: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(
        self, *args: str, env: dict[str, str] | None = None, log: Path | None = None
    ) -> asyncio.subprocess.Process:
        stderr = log.open("ab") if log is not None else asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(
            *args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
        self.started.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, wait: float = 15) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), wait)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def stop_all(self) -> None:
        for proc in reversed(self.started):
            await self.stop(proc)


async def read_line(proc: asyncio.subprocess.Process, wait: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), wait)
    if not line:
        raise RuntimeError(f"process {proc.pid} exited before saying it was ready")
    return line.decode().strip()


def record(results: Path, command: str, body: str, title: str = "") -> None:
    """Append ``body`` under a dated heading (``title`` after the date), with the machine and
    the command that reproduces it."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = f"{now}: {title}" if title else now
    section = f"\n## {heading}\n\nMachine: {machine()}  \nCommand: `{command}`\n\n{body}\n"
    if not results.exists():
        results.write_text(
            "# Benchmark results\n\nAppended by the scripts in `bench/`, newest last.\n"
        )
    with results.open("a") as f:
        f.write(section)


async def start_serve(
    procs: Procs, tmp: Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, str]:
    """``python -m service serve`` on a free port with ``env`` (the limits off), once /healthz
    answers; returns it and its base URL. Its log: ``tmp/service.log``."""
    port = free_port()
    proc = await procs.start(
        sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
        env={**env, **UNLIMITED}, log=tmp / "service.log",
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return proc, base
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError(f"the service did not start; see {tmp / 'service.log'}")
            await asyncio.sleep(0.2)
