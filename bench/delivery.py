"""Delivery benchmark: how soon a requested phrase goes upstream, and how soon the agent hears it.
See bench/README.md for what each figure means.

    .venv/bin/python bench/delivery.py --sessions 1,100,500 \\
        --database sqlite --database postgresql://postgres@127.0.0.1:5432/bench_delivery

For each database and each number of sessions N: a fresh database (a SQLite file in a temporary
folder, or the PostgreSQL database named in the URL, created here and dropped here: it must not
exist), the simulator in its own process (``bench/upstream.py``: ``stamp_events`` on, it records
when each ``response.create`` arrives and when its first audio delta leaves), the service
(``python -m service serve``) in front of it, and N agents (``--role agents``, raw aiohttp
clients split over ``--workers`` processes) relayed through it, turn detection off and otherwise
quiet. In each round every agent asks for one delivery (``POST /v1/sessions/{id}/deliveries``)
at a random moment of a ``--spread`` second window; rounds start every ``--period`` seconds, the
first ``--warmup-rounds`` are not counted. Every process binds 127.0.0.1, every wait is bounded,
every process started here is stopped here.

Times are ``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on Linux): the
agent's before it sends the POST and when the delivery's first audio frame reaches it, the
simulator's when the ``response.create`` frame arrives and when its first audio delta leaves.
Deliveries are matched across processes by their id (``response.metadata``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import make_url

from bench.agents import Roll
from bench.common import (
    ROOT,
    Procs,
    cpu_seconds,
    machine_ticks,
    percentile,
    read_line,
    record,
    start_serve,
)
from bench.relay import QUERY, show_logs, split, upstream_env

CREATE_TARGET_MS = 5.0  # response.create leaves the service within this of the request (p99)
AUDIO_TARGET_MS = 5.0  # first audio at the agent: the simulator's own first audio plus this (p99)
TARGET_SESSIONS = 100
PHRASE = "bench-disclosure"
TEXT = "This call is recorded, {{name}}."  # 26 characters: 1.7 s of audio at the simulator's rate
NAME = "Jo"
DELTA_MARK = '"type": "response.audio.delta"'
STAMP_MARK = '"event_id": "event_'
RID_MARK = '"response_id": "'

# --- the agents (--role agents) -------------------------------------------------------------------


@dataclass
class Agent:
    """One relayed session and what it saw of its deliveries (all times monotonic ns)."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    by_response: dict[str, str] = field(default_factory=dict)  # response id -> delivery id
    awaiting_audio: set[str] = field(default_factory=set)  # response ids
    heard: dict[str, tuple[int, int]] = field(default_factory=dict)  # delivery -> (recv, stamp)
    done: dict[str, str] = field(default_factory=dict)  # delivery -> response status
    errors: list[str] = field(default_factory=list)  # error events from upstream or service
    failed: list[str] = field(default_factory=list)  # what went wrong on the agent's side
    last: str | None = None  # the delivery asked for last
    last_done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_frame(self, frame: str, now: int) -> None:
        if frame.find(DELTA_MARK, 0, 200) >= 0:
            if not self.awaiting_audio:
                return
            at = frame.find(RID_MARK, 0, 300) + len(RID_MARK)
            rid = frame[at : frame.index('"', at)]
            if rid in self.awaiting_audio:
                self.awaiting_audio.discard(rid)
                at = frame.find(STAMP_MARK, 0, 200) + len(STAMP_MARK)
                self.heard[self.by_response[rid]] = (now, int(frame[at : frame.index("_", at)]))
            return
        event = json.loads(frame)
        kind = event.get("type")
        if kind in ("response.created", "response.done"):
            response = event.get("response") or {}
            delivery = (response.get("metadata") or {}).get("compliance_delivery_id")
            if delivery is None:
                return
            if kind == "response.created":
                self.by_response[response["id"]] = delivery
                self.awaiting_audio.add(response["id"])
            else:
                self.done[delivery] = response.get("status") or "?"
                if delivery == self.last:
                    self.last_done.set()
                self.awaiting_audio.discard(response["id"])
        elif kind == "error":
            self.errors.append(json.dumps(event.get("error"))[:300])


async def _connect(
    url: str, base: str, key: str, http: aiohttp.ClientSession
) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A relayed session with turn detection off; returns its socket and the service's id."""
    ws = await http.ws_connect(
        url, headers={"api-key": key}, compress=0, timeout=aiohttp.ClientWSTimeout(ws_close=5.0)
    )
    first = await asyncio.wait_for(ws.receive(), 30)
    voicelive_id = json.loads(first.data)["session"]["id"]
    await ws.send_str(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
    while '"session.updated"' not in (await asyncio.wait_for(ws.receive(), 30)).data:
        pass
    for _ in range(100):  # the service records the Voice Live id a moment after session.created
        async with http.get(f"{base}/v1/sessions/{voicelive_id}", headers={"api-key": key}) as r:
            if r.status == 200:
                return ws, (await r.json())["id"]
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the service never knew session {voicelive_id}")


async def _read(ws: aiohttp.ClientWebSocketResponse, agent: Agent) -> None:
    while True:
        message = await ws.receive()
        now = time.monotonic_ns()
        if message.type is not aiohttp.WSMsgType.TEXT:
            return
        agent.on_frame(message.data, now)


async def _run_agent(
    args: argparse.Namespace,
    opening: asyncio.Semaphore,
    roll: Roll,
    go: asyncio.Future[int],
    agent: Agent,
) -> None:
    """Connect (at most ``opening`` at a time), say so on ``roll``, then the rounds from ``go``."""
    # Two connections per agent: its WebSocket, and one kept alive for its HTTP requests. The
    # client lets an idle connection go sooner than the server does (uvicorn: after 5 s), or a
    # request sent on it as the server closes it is reset (seen at 500 sessions, where rounds run
    # late and a connection can sit idle for 5 s).
    connector = aiohttp.TCPConnector(limit=2, keepalive_timeout=4)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            async with opening:
                ws, session_id = await _connect(args.url, args.base, args.key, http)
        except Exception as exc:
            agent.failed.append(f"connect: {type(exc).__name__}: {exc}"[:300])
            roll.tell(0)
            return
        roll.tell(1)
        reader = asyncio.create_task(_read(ws, agent))
        try:
            await _rounds(args, http, session_id, await go, agent)
        except Exception as exc:
            agent.failed.append(f"{type(exc).__name__}: {exc}"[:300])
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await reader
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)


async def _rounds(
    args: argparse.Namespace, http: aiohttp.ClientSession, session_id: str, t0: int, agent: Agent
) -> None:
    body = {"phrase_key": PHRASE, "variables": {"name": NAME}}
    target = f"{args.base}/v1/sessions/{session_id}/deliveries"
    previous: str | None = None
    for n in range(args.rounds):
        offset = n * args.period + random.uniform(0, args.spread)  # noqa: S311 - not a secret
        await asyncio.sleep(max(t0 + int(offset * 1e9) - time.monotonic_ns(), 0) / 1e9)
        behind = previous is not None and previous not in agent.done
        posted = time.monotonic_ns()
        async with http.post(target, json=body, headers={"api-key": args.key}) as response:
            answer = await response.json()
            answered = time.monotonic_ns()
        if response.status != 201:
            agent.failed.append(f"POST {response.status}: {json.dumps(answer)[:200]}")
            continue
        previous = agent.last = answer["id"]
        agent.last_done.clear()
        if previous in agent.done:
            agent.last_done.set()
        agent.posts.append(
            {"id": previous, "round": n, "posted": posted, "answered": answered, "behind": behind}
        )
    if previous is not None:  # the last one plays to its end
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(agent.last_done.wait(), args.period + 10)


async def run_agents(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    go: asyncio.Future[int] = loop.create_future()
    agents = [Agent() for _ in range(args.count)]
    roll = Roll(args.count)
    opening = asyncio.Semaphore(10)
    tasks = [asyncio.create_task(_run_agent(args, opening, roll, go, a)) for a in agents]
    await roll.done.wait()
    print(f"connected {sum(roll.answers)}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    word, _, t0 = line.partition(" ")
    if word != "go":
        raise SystemExit(f"expected 'go <t0_ns>', got {line!r}")
    go.set_result(int(t0))
    await asyncio.gather(*tasks)
    # The driver measures CPU until the last round's period ends: stay until then.
    end = int(t0) + int((args.rounds * args.period + 1) * 1e9)
    await asyncio.sleep(max(end - time.monotonic_ns(), 0) / 1e9)
    deliveries = []
    for agent in agents:
        for post in agent.posts:
            heard = agent.heard.get(post["id"])
            deliveries.append(
                post
                | {
                    "heard": heard[0] if heard else None,
                    "heard_stamp": heard[1] if heard else None,
                    "status": agent.done.get(post["id"]),
                }
            )
    return {
        "connected": sum(roll.answers),
        "deliveries": deliveries,
        "failed": [f for a in agents for f in a.failed][:20],
        "failures": sum(len(a.failed) for a in agents),
        "errors": [e for a in agents for e in a.errors][:20],
        "error_count": sum(len(a.errors) for a in agents),
    }


# --- the driver -----------------------------------------------------------------------------------


def database_label(spec: str) -> str:
    return "SQLite" if spec == "sqlite" else "PostgreSQL"


@contextlib.asynccontextmanager
async def fresh_database(spec: str, tmp: Path) -> Any:
    """A database URL for one run: a new SQLite file, or the named PostgreSQL database created
    now and dropped afterwards (refused if it exists: it is not ours to drop)."""
    if spec == "sqlite":
        yield f"sqlite:///{tmp / 'service.db'}"
        return
    import asyncpg

    url = make_url(spec)
    if url.get_backend_name() != "postgresql" or not url.database:
        raise SystemExit(f"--database takes 'sqlite' or postgresql://.../<name>, not {spec!r}")
    name = url.database
    admin = {"host": url.host, "port": url.port or 5432, "user": url.username}
    admin |= {"password": url.password, "database": "postgres", "timeout": 10}
    conn = await asyncpg.connect(**admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(**admin)
        try:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def start_service(
    procs: Procs, tmp: Path, upstream_url: str, database_url: str
) -> tuple[asyncio.subprocess.Process, str, str]:
    """The service on a free port; returns it, its base URL and an admin key."""
    admin = secrets.token_urlsafe(24)
    env = {
        "COMPLIANCE_DATABASE_URL": database_url,
        "COMPLIANCE_BOOTSTRAP_ADMIN_KEY": admin,
        **upstream_env(upstream_url),
    }
    proc, base = await start_serve(procs, tmp, env)
    return proc, base, admin


async def approved_phrase(base: str, admin: str) -> str:
    """Keys for an editor, an approver and the agents; the phrase, drafted and approved. Returns
    the agents' key."""
    async with aiohttp.ClientSession(base_url=base) as http:

        async def call(key: str, path: str, body: dict[str, Any] | None = None) -> Any:
            async with http.post(path, json=body, headers={"api-key": key}) as response:
                answer = await response.json()
                if response.status >= 300:
                    raise RuntimeError(f"POST {path}: {response.status} {answer}")
                return answer

        keys = {}
        for who, role in (("editor", "editor"), ("approver", "approver"), ("agent", "agent")):
            body = {"principal": f"bench-{who}", "roles": [role]}
            keys[who] = (await call(admin, "/v1/api-keys", body))["key"]
        phrase = {"key": PHRASE, "title": "Recording disclosure", "category": "disclosure"}
        await call(keys["editor"], "/v1/phrases", phrase | {"default_locale": "en-US"})
        version = {"texts": {"en-US": TEXT}, "variables": [{"name": "name", "max_length": 40}]}
        await call(keys["editor"], f"/v1/phrases/{PHRASE}/versions", version)
        await call(keys["editor"], f"/v1/phrases/{PHRASE}/versions/1/submit")
        await call(keys["approver"], f"/v1/phrases/{PHRASE}/versions/1/approve", {})
        agent: str = keys["agent"]
        return agent


@dataclass
class Run:
    database: str
    n: int
    rounds: int
    figures: dict[str, list[float]]  # ms per measured delivery, by figure
    requested: int  # deliveries the measured rounds asked for
    behind: int  # asked for while the session's previous one still played (not measured)
    unmatched: int  # measured requests without both stamps (never sent, or never heard)
    cpu: dict[str, float]
    machine_busy: float
    connected: int
    failures: list[str]
    failure_count: int
    errors: int

    @property
    def other_load(self) -> float:
        return max(self.machine_busy * (os.cpu_count() or 1) - sum(self.cpu.values()), 0.0)

    def p(self, figure: str, q: float) -> float:
        return percentile(self.figures[figure], q)

    @property
    def clean(self) -> bool:
        return self.connected == self.n and not self.failure_count and not self.errors


def join(agents: list[dict[str, Any]], upstream: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Per measured delivery, in ms: the figures of the table (see bench/README.md)."""
    sim = {
        (t["metadata"] or {}).get("compliance_delivery_id"): t
        for t in upstream["timings"]
        if t["metadata"]
    }
    names = ("create", "answered", "upstream_first", "heard", "added", "leg")
    figures: dict[str, list[float]] = {name: [] for name in names}
    requested = behind = unmatched = 0
    for d in (d for a in agents for d in a["deliveries"] if d["round"] >= warmup):
        requested += 1
        if d["behind"]:
            behind += 1
            continue
        t = sim.get(d["id"])
        if t is None or t["first_audio_ns"] is None or d["heard"] is None:
            unmatched += 1
            continue
        ms = {
            "create": t["requested_ns"] - d["posted"],
            "answered": d["answered"] - d["posted"],
            "upstream_first": t["first_audio_ns"] - t["requested_ns"],
            "heard": d["heard"] - d["posted"],
            "leg": d["heard"] - t["first_audio_ns"],
        }
        ms["added"] = ms["heard"] - ms["upstream_first"]
        for name, ns in ms.items():
            figures[name].append(ns / 1e6)
    return {"figures": figures, "requested": requested, "behind": behind, "unmatched": unmatched}


async def profile_service(
    procs: Procs, into: Path | None, label: str, pid: int, seconds: float
) -> asyncio.subprocess.Process | None:
    if into is None:
        return None
    spy = str(Path(sys.executable).with_name("py-spy"))
    out = into / f"service-{label}.txt"
    command = [spy, "record", "-p", str(pid), "-d", str(max(int(seconds), 1)), "-r", "200"]
    return await procs.start(*command, "-f", "raw", "-o", str(out))


async def run_one(spec: str, n: int, args: argparse.Namespace) -> Run:
    procs = Procs()
    rounds = max(args.rounds, math.ceil(args.min_deliveries / n)) + args.warmup_rounds
    label = f"{database_label(spec).lower()}-{n}"
    with tempfile.TemporaryDirectory(prefix=f"bench-delivery-{n}-") as name:
        tmp = Path(name)
        try:
            async with fresh_database(spec, tmp) as database_url:
                return await _measure(procs, tmp, spec, database_url, n, rounds, label, args)
        except BaseException:
            show_logs(tmp)
            raise
        finally:
            await procs.stop_all()


async def _measure(
    procs: Procs,
    tmp: Path,
    spec: str,
    database_url: str,
    n: int,
    rounds: int,
    label: str,
    args: argparse.Namespace,
) -> Run:
    up_out = tmp / "upstream.json"
    command = [sys.executable, "-m", "bench.upstream", "--out", str(up_out)]
    upstream = await procs.start(*command, log=tmp / "upstream.log")
    sim_url = await read_line(upstream, 30)
    service, base, admin = await start_service(procs, tmp, sim_url, database_url)
    key = await approved_phrase(base, admin)
    relay_url = f"ws://127.0.0.1:{base.rsplit(':', 1)[1]}/voice-live/realtime?{QUERY}&greeting=none"
    workers, outs = [], []
    for i, count in enumerate(split(n, args.workers)):
        out = tmp / f"agents-{i}.json"
        command = [sys.executable, "-m", "bench.delivery", "--role", "agents", "--url", relay_url]
        command += ["--base", base, "--key", key, "--count", str(count), "--rounds", str(rounds)]
        command += ["--period", str(args.period), "--spread", str(args.spread), "--out", str(out)]
        workers.append(await procs.start(*command, log=tmp / f"agents-{i}.log"))
        outs.append(out)
    connected = sum([int((await read_line(w, 300)).split()[1]) for w in workers])
    t0 = time.monotonic_ns() + 1_000_000_000
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(f"go {t0}\n".encode())
        await w.stdin.drain()
    watched = {"service": service.pid, "upstream": upstream.pid}
    watched |= {f"agents{i}": w.pid for i, w in enumerate(workers)}
    start = t0 / 1e9 + args.warmup_rounds * args.period
    seconds = (rounds - args.warmup_rounds) * args.period
    await asyncio.sleep(max(start - time.monotonic(), 0))
    profiler = await profile_service(procs, args.profile, label, service.pid, seconds)
    before = {k: cpu_seconds(pid) for k, pid in watched.items()}
    ticks_before, wall_before = machine_ticks(), time.monotonic()
    await asyncio.sleep(max(start + seconds - time.monotonic(), 0))
    wall = time.monotonic() - wall_before
    cpu = {k: (cpu_seconds(pid) - before[k]) / wall for k, pid in watched.items()}
    spent = [b - a for a, b in zip(ticks_before, machine_ticks(), strict=True)]
    for proc in [*workers, *([profiler] if profiler else [])]:
        await asyncio.wait_for(proc.wait(), args.period + 90)
    await procs.stop(upstream)
    await procs.stop(service)
    agents = [json.loads(o.read_text()) for o in outs]
    joined = join(agents, json.loads(up_out.read_text()), args.warmup_rounds)
    return Run(
        database=database_label(spec),
        n=n,
        rounds=rounds - args.warmup_rounds,
        cpu=cpu,
        machine_busy=1 - (spent[3] + spent[4]) / (sum(spent) or 1),
        connected=connected,
        failures=[f for a in agents for f in a["failed"] + a["errors"]][:10],
        failure_count=sum(a["failures"] for a in agents) + n - connected,
        errors=sum(a["error_count"] for a in agents),
        **joined,
    )


# --- report ---------------------------------------------------------------------------------------


def _pair(run: Run, figure: str, bold: bool = False) -> str:
    p50, p99 = run.p(figure, 0.5), run.p(figure, 0.99)
    if math.isnan(p50):
        return "-"
    tail = f"**{p99:.2f}**" if bold else f"{p99:.2f}"
    return f"{p50:.2f} / {tail}"


def table(runs: list[Run], args: argparse.Namespace) -> str:
    lines = [
        f"Each session asks for one delivery per round, at a random moment of a {args.spread:g} s "
        f"window; a round every {args.period:g} s; {args.warmup_rounds} warm-up round(s) not "
        f'counted. The phrase: "{TEXT}" (1.7 s of audio). Times in ms, p50 / p99.',
        "",
        "| database | sessions | deliveries/s in the window | measured (of asked) "
        "| POST -> response.create at the upstream | POST -> 201 at the agent "
        "| upstream's own first audio | POST -> first audio at the agent "
        "| first audio: agent minus upstream's own | first audio frame upstream -> agent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        rate = r.n / args.spread if args.spread else math.inf
        measured = len(r.figures["create"])
        lines.append(
            f"| {r.database} | {r.n} | {rate:.0f} | {measured} of {r.requested} "
            f"| {_pair(r, 'create', True)} | {_pair(r, 'answered')} "
            f"| {_pair(r, 'upstream_first')} | {_pair(r, 'heard')} "
            f"| {_pair(r, 'added', True)} | {_pair(r, 'leg')} |"
        )
    lines += [
        "",
        "| database | sessions | service CPU (of one core) | simulator CPU | agents CPU "
        "| machine busy | other load (cores) | asked while the previous played | failures "
        "| response.create p99 <= 5 ms | first audio p99 <= upstream's + 5 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in runs:
        agents = sum(v for k, v in r.cpu.items() if k.startswith("agents"))
        failures = r.failure_count + r.errors + r.unmatched
        create_ok = r.p("create", 0.99) <= CREATE_TARGET_MS and r.clean
        audio_ok = r.p("added", 0.99) <= AUDIO_TARGET_MS and r.clean
        lines.append(
            f"| {r.database} | {r.n} | **{r.cpu['service']:.0%}** | {r.cpu['upstream']:.0%} "
            f"| {agents:.0%} | {r.machine_busy:.0%} | {r.other_load:.2f} | {r.behind} "
            f"| {failures} | {'yes' if create_ok else 'no'} | {'yes' if audio_ok else 'no'} |"
        )
    problems = [f"{r.database} {r.n}: {f}" for r in runs for f in r.failures]
    if problems:
        lines += ["", "Failures (first few):", *[f"- `{p}`" for p in problems[:10]]]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Run]:
    # Stopped from outside (``timeout``): unwind, so that every process is stopped and a
    # PostgreSQL database created here is dropped.
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
    runs = []
    for spec in args.database:
        for n in args.sessions:
            rounds = max(args.rounds, math.ceil(args.min_deliveries / n)) + args.warmup_rounds
            budget = rounds * args.period + 600
            print(f"{database_label(spec)}, {n} sessions ...", file=sys.stderr, flush=True)
            async with asyncio.timeout(budget):
                runs.append(await run_one(spec, n, args))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", default="1,100,500", help="comma-separated session counts")
    parser.add_argument(
        "--database",
        action="append",
        help="'sqlite' (default) or postgresql://user@host:port/<name to create and drop>; "
        "may be given more than once",
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument(
        "--min-deliveries", type=int, default=40, help="more rounds when N x rounds is below this"
    )
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--period", type=float, default=3.0, help="seconds between rounds")
    parser.add_argument("--spread", type=float, default=1.0, help="window of a round's requests")
    parser.add_argument("--workers", type=int, default=2, help="agent processes")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--profile", type=Path, help="py-spy the service into this folder")
    # The processes this command starts itself:
    parser.add_argument("--role", choices=("driver", "agents"), default="driver")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--url")
    parser.add_argument("--base")
    parser.add_argument("--key")
    parser.add_argument("--count", type=int)
    args = parser.parse_args()
    if args.role != "driver":
        try:
            import uvloop
        except ImportError:
            runner: Any = asyncio.run
        else:
            runner = uvloop.run
        args.out.write_text(json.dumps(runner(run_agents(args))))
        return
    if args.spread >= args.period - 1.8:
        parser.error("--period must exceed --spread by the phrase's 1.7 s of audio and more")
    args.database = args.database or ["sqlite"]
    args.sessions = [int(v) for v in args.sessions.split(",")]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "bench/delivery.py", *sys.argv[1:]])
    runs = asyncio.run(main_async(args))
    body = table(runs, args)
    print(body)
    if not args.no_record:
        record(args.results, command, body, "delivery")


if __name__ == "__main__":
    main()
