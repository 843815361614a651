"""Audit benchmark: what the hash chain costs a write, and how long verifying it takes, on SQLite
and PostgreSQL, each next to a reference measured in the same run. See bench/README.md.

    .venv/bin/python bench/audit.py
    .venv/bin/python bench/audit.py --writers 1,4,16 --seconds 5 --events 1000000

Appends: for each number of writers W, W tasks run transactions back to back for ``--seconds`` (or
until ``--appends`` transactions in all), each transaction opened from the service's own engine
and session maker and committed alone, as a change of the service is. ``plain`` transactions
insert one row of the same shape into a table without the chain (the reference), ``chain``
transactions call ``audit.append``. Afterwards ``audit.verify`` must find every appended event
linked, so the figures are for a chain that stayed correct under concurrency.

Verify: a fresh database gets a chain of ``--events`` valid events, generated with the chain's own
hashing and inserted in bulk; then ``audit.verify`` (what ``GET /v1/audit/verify`` runs), the
command line ``compliance-service audit verify`` (a process of its own, start-up included), reading
the rows alone, and the pure chain check on events already in memory (the reference) are timed.

Every database is created here and dropped here (SQLite: a temporary folder; PostgreSQL: a database
``bench_audit_<pid>_<n>`` next to ``--postgres``); every phase is bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.common import ROOT, TICK, cpu_seconds, machine_ticks, percentile, record
from service.audit import service as audit
from service.audit.chain import GENESIS_HASH, event_hash, verify_chain
from service.audit.models import AuditEvent
from service.kit import migrate
from service.kit.actor import Actor
from service.kit.base import JSONType, UTCDateTime
from service.kit.db import create_engine, create_sessionmaker
from service.kit.logs import JsonFormatter

ACTOR = Actor("bench-writer", "key_bench")
BACKENDS = ("sqlite", "postgresql")


class PlainBase(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime}


class PlainEvent(PlainBase):
    """The reference: an audit event's columns, numbered by the database, and no chain."""

    __tablename__ = "bench_plain_events"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    at: Mapped[datetime]
    principal: Mapped[str] = mapped_column(sa.String(200))
    key_id: Mapped[str | None] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(80))
    subject_type: Mapped[str] = mapped_column(sa.String(40))
    subject_id: Mapped[str] = mapped_column(sa.String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


def delivery_details(n: int) -> dict[str, Any]:
    """What the most frequent event, a delivery's transition, carries."""
    return {
        "session_id": f"ses_{n // 7:012x}",
        "status": "delivered",
        "attempt": 1,
        "response_id": f"resp_{n:016x}",
        "played_ms": 4200 + n % 1000,
        "transcript_verified": True,
        "reason": None,
    }


# --- databases ------------------------------------------------------------------------------------


class Databases:
    """Creates and drops this run's databases."""

    def __init__(self, postgres_url: str, tmp: Path) -> None:
        self.admin = make_url(postgres_url)
        self.tmp = tmp
        self.made = 0

    async def _pg(self, sql: str) -> None:
        conn = await asyncpg.connect(
            host=self.admin.host or "127.0.0.1",
            port=self.admin.port or 5432,
            user=self.admin.username or "postgres",
            password=self.admin.password,
            database=self.admin.database,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def migrated(self, backend: str) -> AsyncIterator[AsyncEngine]:
        """A fresh database built by the real migrations, plus the reference table; dropped
        after."""
        self.made += 1
        name = f"bench_audit_{os.getpid()}_{self.made}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / name}.db"
        else:
            await self._pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await self._pg(f"CREATE DATABASE {name}")
            url = self.admin.set(database=name).render_as_string(hide_password=False)
        engine = create_engine(url)
        try:
            await migrate.upgrade(engine)
            async with engine.begin() as connection:
                await connection.run_sync(PlainBase.metadata.create_all)
            yield engine
        finally:
            await engine.dispose()
            if backend == "sqlite":
                for path in self.tmp.glob(f"{name}.db*"):
                    path.unlink()
            else:
                await self._pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def url_of(engine: AsyncEngine) -> str:
    """The plain URL an operator would give the command line."""
    url = engine.url.set(drivername=engine.url.get_backend_name())
    return url.render_as_string(hide_password=False)


# --- appends --------------------------------------------------------------------------------------


@dataclass
class Appends:
    backend: str
    kind: str  # "plain" (the reference) or "chain"
    writers: int
    done: int
    seconds: float
    latencies: list[float]  # seconds, per transaction
    cpu: float  # this process's CPU seconds over the phase
    server_cpu: float  # the PostgreSQL server's (0 on SQLite)
    connects: int  # connections the pool opened during the phase
    machine_busy: float  # all CPUs, from /proc/stat

    @property
    def other_load(self) -> float:
        """Cores busy with what this benchmark did not run: the shared machine's noise."""
        used = (self.cpu + (0.0 if math.isnan(self.server_cpu) else self.server_cpu)) / self.seconds
        return max(self.machine_busy * (os.cpu_count() or 1) - used, 0.0)

    @property
    def rate(self) -> float:
        return self.done / self.seconds

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def us(self, seconds: float) -> float:
        """Per transaction, in microseconds."""
        return seconds / self.done * 1e6


async def one_transaction(
    maker: async_sessionmaker[AsyncSession], kind: str, writer: int, n: int
) -> None:
    async with maker.begin() as db:
        if kind == "chain":
            await audit.append(
                db,
                ACTOR,
                "delivery.delivered",
                "delivery",
                f"dlv_{writer}_{n}",
                delivery_details(n),
            )
        else:
            db.add(
                PlainEvent(
                    at=datetime.now(UTC),
                    principal=ACTOR.principal,
                    key_id=ACTOR.key_id,
                    action="delivery.delivered",
                    subject_type="delivery",
                    subject_id=f"dlv_{writer}_{n}",
                    details=delivery_details(n),
                )
            )
            await db.flush()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


async def server_cpu(engine: AsyncEngine) -> float:
    """CPU seconds the PostgreSQL server has used so far, when it runs on this machine: its
    postmaster, every process it started, and those that already ended (a connection the pool
    closes ends its backend). Any other client of the same server counts too. 0 on SQLite."""
    if engine.dialect.name != "postgresql":
        return 0.0
    async with engine.connect() as connection:
        backend = await connection.scalar(sa.text("SELECT pg_backend_pid()"))
    try:
        return _family_seconds(int(_stat(int(backend))[1]))
    except OSError:
        return math.nan  # another machine


def _family_seconds(parent: int) -> float:
    total = sum(int(v) for v in _stat(parent)[11:15])  # utime stime cutime cstime
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            child = stat.read_text().rsplit(")", 1)[1].split()
            if int(child[1]) == parent:
                total += int(child[11]) + int(child[12])
    return total / TICK


async def run_appends(
    engine: AsyncEngine, backend: str, kind: str, writers: int, seconds: float, limit: int
) -> Appends:
    maker = create_sessionmaker(engine)
    latencies: list[float] = []

    async def writer(w: int) -> None:
        n = 0
        while time.perf_counter() < deadline and len(latencies) < limit:
            start = time.perf_counter()
            await one_transaction(maker, kind, w, n)
            latencies.append(time.perf_counter() - start)
            n += 1

    connects = [0]

    def connected(*_: Any) -> None:
        connects[0] += 1

    server = await server_cpu(engine)
    sa.event.listen(engine.sync_engine, "connect", connected)
    ticks, cpu, start = machine_ticks(), cpu_seconds(os.getpid()), time.perf_counter()
    deadline = start + seconds
    async with asyncio.timeout(seconds + 120), asyncio.TaskGroup() as group:
        for w in range(writers):
            group.create_task(writer(w))
    elapsed, cpu = time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu
    spent = [b - a for a, b in zip(ticks, machine_ticks(), strict=True)]
    sa.event.remove(engine.sync_engine, "connect", connected)
    server = await server_cpu(engine) - server
    return Appends(
        backend=backend,
        kind=kind,
        writers=writers,
        done=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        cpu=cpu,
        server_cpu=server,
        connects=connects[0],
        machine_busy=1 - (spent[3] + spent[4]) / (sum(spent) or 1),
    )


async def append_phases(dbs: Databases, backend: str, args: argparse.Namespace) -> list[Appends]:
    results = []
    async with dbs.migrated(backend) as engine:
        for writers in args.writers:
            for kind in ("plain", "chain"):
                print(f"{backend}: {writers} writers, {kind} ...", file=sys.stderr, flush=True)
                await run_appends(engine, backend, kind, writers, args.warmup, args.appends)
                results.append(
                    await run_appends(engine, backend, kind, writers, args.seconds, args.appends)
                )
        async with create_sessionmaker(engine, read_only=True).begin() as db:
            result = await audit.verify(db)
            stored = await db.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
        if not result.ok or result.checked != stored:
            raise RuntimeError(f"the chain appended under concurrency is broken: {result}")
    return results


# --- verify ---------------------------------------------------------------------------------------


def generate(count: int, batch: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """A valid chain of ``count`` delivery events, in batches, hashed by the chain's own code."""
    prev, start = GENESIS_HASH, datetime(2026, 1, 1, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        event: dict[str, Any] = {
            "seq": seq,
            "at": start + timedelta(milliseconds=seq * 37),
            "principal": "service",
            "key_id": None,
            "action": "delivery.delivered",
            "subject_type": "delivery",
            "subject_id": f"dlv_{seq:016x}",
            "details": delivery_details(seq),
            "prev_hash": prev,
        }
        event["hash"] = prev = event_hash(event)
        events.append(event)
        if len(events) == batch:
            yield events
            events = []
    if events:
        yield events


@dataclass
class Verify:
    backend: str
    events: int
    insert_s: float
    verify_s: float
    cli_s: float
    read_s: float
    memory_events: int
    memory_s: float

    def per_million(self, seconds: float, events: int | None = None) -> float:
        return seconds / (events or self.events) * 1e6


async def timed_verify(engine: AsyncEngine, expected: int) -> float:
    start = time.perf_counter()
    async with create_sessionmaker(engine, read_only=True).begin() as db:
        result = await audit.verify(db)
    elapsed = time.perf_counter() - start
    if not result.ok or result.checked != expected:
        raise RuntimeError(f"verify did not check the generated chain: {result}")
    return elapsed


async def timed_read(engine: AsyncEngine, expected: int) -> float:
    start = time.perf_counter()
    async with create_sessionmaker(engine, read_only=True).begin() as db:
        read = 0
        async for _ in audit.iter_events(db):
            read += 1
    if read != expected:
        raise RuntimeError(f"read {read} events of {expected}")
    return time.perf_counter() - start


def timed_cli(engine: AsyncEngine, expected: int) -> float:
    env = {
        **os.environ,
        "COMPLIANCE_DATABASE_URL": url_of(engine),
        "COMPLIANCE_LOG_LEVEL": "WARNING",
    }
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "service", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or json.loads(done.stdout)["checked"] != expected:
        raise RuntimeError(f"audit verify failed: {done.stdout!r} {done.stderr[-2000:]!r}")
    return elapsed


async def verify_phase(dbs: Databases, backend: str, args: argparse.Namespace) -> Verify:
    async with dbs.migrated(backend) as engine:
        print(f"{backend}: writing {args.events} events ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        for events in generate(args.events):
            async with engine.begin() as connection:
                await connection.execute(sa.insert(AuditEvent), events)
        insert_s = time.perf_counter() - start
        print(f"{backend}: verifying ...", file=sys.stderr, flush=True)
        verify_s = await timed_verify(engine, args.events)
        read_s = await timed_read(engine, args.events)
        cli_s = await asyncio.to_thread(timed_cli, engine, args.events)
    in_memory = [e for events in generate(min(args.events, args.memory_events)) for e in events]
    start = time.perf_counter()
    result = verify_chain(in_memory)
    memory_s = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"the generated chain does not verify: {result}")
    return Verify(backend, args.events, insert_s, verify_s, cli_s, read_s, len(in_memory), memory_s)


# --- report ---------------------------------------------------------------------------------------


def _f(v: float, digits: int = 2) -> str:
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def table(appends: list[Appends], verifies: list[Verify]) -> str:
    lines = [
        "Appends: each transaction one insert (plain: a row of the same shape without the chain, "
        "the reference) or one `audit.append` (chain), committed alone.",
        "",
        "| database | writers | plain appends/s | chain appends/s | chain / plain "
        "| plain p50 / p99 ms | chain p50 / p99 ms | client CPU per append plain / chain µs "
        "| server CPU per append plain / chain µs | other load (cores) plain / chain "
        "| transactions (new connections) plain / chain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pairs: dict[tuple[str, int], dict[str, Appends]] = {}
    for a in appends:
        pairs.setdefault((a.backend, a.writers), {})[a.kind] = a
    for (backend, writers), pair in pairs.items():
        plain, chain = pair["plain"], pair["chain"]
        lines.append(
            f"| {backend} | {writers} | {plain.rate:.0f} | {chain.rate:.0f} "
            f"| **{chain.rate / plain.rate:.2f}** "
            f"| {_f(plain.ms(0.5))} / {_f(plain.ms(0.99))} "
            f"| {_f(chain.ms(0.5))} / **{_f(chain.ms(0.99))}** "
            f"| {plain.us(plain.cpu):.0f} / {chain.us(chain.cpu):.0f} "
            f"| {plain.us(plain.server_cpu):.0f} / {chain.us(chain.server_cpu):.0f} "
            f"| {plain.other_load:.2f} / {chain.other_load:.2f} "
            f"| {plain.done} ({plain.connects}) / {chain.done} ({chain.connects}) |"
        )
    if verifies:
        lines += [
            "",
            "Verify: seconds per million events (the chain's length in brackets); the pure chain "
            "check runs on events already in memory (the reference).",
            "",
            "| database | events | `audit.verify` s/M | command line s/M | reading rows alone s/M "
            "| pure chain check s/M | verify / pure | bulk insert s/M |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for v in verifies:
            memory = v.per_million(v.memory_s, v.memory_events)
            verify = v.per_million(v.verify_s)
            lines.append(
                f"| {v.backend} | {v.events} | **{verify:.1f}** | {v.per_million(v.cli_s):.1f} "
                f"| {v.per_million(v.read_s):.1f} | {memory:.1f} ({v.memory_events}) "
                f"| {verify / memory:.2f} | {v.per_million(v.insert_s):.1f} |"
            )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> tuple[list[Appends], list[Verify]]:
    appends: list[Appends] = []
    verifies: list[Verify] = []
    # Stopped (``timeout``, kill): unwind, so that the databases and files are still removed.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        # Every committed audit event is a JSON log line in the service: count it, into a file.
        handler = logging.FileHandler(Path(tmp) / "service.log")
        handler.setFormatter(JsonFormatter())
        logging.getLogger().handlers[:] = [handler]
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        dbs = Databases(args.postgres, Path(tmp))
        for backend in args.backends:
            if not args.no_appends:
                appends += await append_phases(dbs, backend, args)
            if args.events:
                verifies.append(await verify_phase(dbs, backend, args))
    return appends, verifies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgresql")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--writers", default="1,4,16", help="comma-separated concurrent writers")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase, at most")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured, before each phase")
    parser.add_argument("--appends", type=int, default=20_000, help="per phase, at most")
    parser.add_argument("--no-appends", action="store_true", help="verify only")
    parser.add_argument("--events", type=int, default=200_000, help="chain length to verify")
    parser.add_argument("--memory-events", type=int, default=200_000, help="for the pure check")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    if unknown := set(args.backends) - set(BACKENDS):
        parser.error(f"unknown backends: {sorted(unknown)}")
    args.writers = [int(v) for v in args.writers.split(",")]
    command = shlex.join([".venv/bin/python", "bench/audit.py", *sys.argv[1:]])
    budget = len(args.backends) * (
        len(args.writers) * 2 * (args.seconds + args.warmup + 60) + args.events / 1000 + 600
    )
    try:
        appends, verifies = asyncio.run(asyncio.wait_for(main_async(args), budget))
    except asyncio.CancelledError:
        sys.exit("stopped; databases and files removed, nothing recorded")
    body = table(appends, verifies)
    print(body)
    if not args.no_record:
        record(args.results, command, body, "audit")


if __name__ == "__main__":
    main()
