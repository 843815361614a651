"""Phrase API benchmark: resolve and list under concurrent load from wrk, against ``serve`` on one
worker, on SQLite and on PostgreSQL, with ``GET /healthz`` on the same server as the reference.
See bench/README.md for what each figure means.

    .venv/bin/python bench/api.py --seconds 10

For each database: a fresh one (a SQLite file in a temporary folder; a PostgreSQL database of its
own, created here and dropped here), ``python -m service serve`` on a free port of 127.0.0.1, a
library seeded through the API (``--phrases`` phrases, each with approved, superseded,
future-dated and draft versions in three locales), then wrk (one connection pool of
``--connections``, a Lua script that adds the agent's key and rotates through the URLs) on
``/healthz``, resolve and list, one after the other, each for ``--warmup`` + ``--seconds``. Every
wait is bounded; every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import ROOT, Procs, cpu_seconds, machine_ticks, record, start_serve

RESOLVE_TARGET_RPS = 3000
RESOLVE_TARGET_P99_MS = 20.0
LOCALES = ("en-US", "fr-FR", "de-DE")
ASKED_LOCALES = ("en-US", "fr-FR", "de-DE", "fr-CA", "en-GB", "de")  # exact, sibling, parent
CATEGORIES = ("disclosure", "disclaimer", "consent", "greeting", "other")
TAGS = ("legal", "sales", "support", "ai", "recording", "finance")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"

LUA = """
local paths = {%(paths)s}
local n = #paths
local i = 0
local headers = {%(headers)s}
function init(args)
  i = math.random(n) - 1
end
function request()
  i = i %% n + 1
  return wrk.format("GET", paths[i], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50": %%d, "p90": %%d, "p99": %%d, "max": %%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# --- the database and the server ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(kind: str, tmp: Path, admin_url: str) -> Any:
    """Yields the service's URL of a fresh database of ``kind``; drops it afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"bench_api_{os.getpid()}"
    connection = await asyncpg.connect(
        admin_url.replace("postgresql://", "postgres://"), timeout=10
    )
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await connection.execute(f"CREATE DATABASE {name}")
        base = admin_url.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await connection.close()


async def start_service(
    procs: Procs, tmp: Path, url: str, admin: str
) -> tuple[asyncio.subprocess.Process, str]:
    env = {"COMPLIANCE_DATABASE_URL": url, "COMPLIANCE_BOOTSTRAP_ADMIN_KEY": admin}
    return await start_serve(procs, tmp, env)


# --- seeding --------------------------------------------------------------------------------------


@dataclass
class Library:
    keys: dict[str, str]  # principal -> API key
    phrases: list[str]
    versions: Counter[str] = field(default_factory=Counter)  # status -> count


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with http.request(method, url, json=body, headers=headers) as response:
        if response.status >= 300:
            raise RuntimeError(f"{method} {url}: {response.status} {await response.text()}")
        result: dict[str, Any] = await response.json()
        return result


def texts(key: str, number: int) -> dict[str, str]:
    words = {
        "en-US": "This call may be recorded for quality and training, {{name}}.",
        "fr-FR": "Cet appel peut être enregistré à des fins de qualité, {{name}}.",
        "de-DE": "Dieses Gespräch kann zu Qualitätszwecken aufgezeichnet werden, {{name}}.",
    }
    return {loc: f"{text} ({key}, v{number})" for loc, text in words.items()}


async def seed(base: str, admin: str, phrases: int, parallel: int = 8) -> Library:
    """Through the API, as people would: an editor drafts, an approver approves. Per phrase:
    v1 approved then superseded by v2 (approved, in force), v3 approved but effective only from
    tomorrow, v4 a draft; every tenth phrase has v2 retired, so v1 is in force again."""
    async with aiohttp.ClientSession(base_url=base) as http:
        keys = {}
        for principal, role in (("editor", "editor"), ("approver", "approver"), ("agent", "agent")):
            body = {"principal": f"bench-{principal}", "roles": [role]}
            keys[principal] = (await _call(http, "POST", "/v1/api-keys", admin, body))["key"]
        library = Library(keys, [f"phrase-{i:03d}" for i in range(phrases)])
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        async def one(i: int, key: str) -> None:
            editor, approver = keys["editor"], keys["approver"]
            await _call(http, "POST", "/v1/phrases", editor, {
                "key": key, "title": f"Phrase {i}", "category": CATEGORIES[i % len(CATEGORIES)],
                "tags": sorted({TAGS[i % len(TAGS)], TAGS[(i * 7) % len(TAGS)]}),
                "default_locale": "en-US", "cross_language_fallback": i % 2 == 0,
            })  # fmt: skip
            for number in (1, 2, 3, 4):
                body: dict[str, Any] = {
                    "texts": texts(key, number),
                    "variables": [{"name": "name", "max_length": 40}],
                    "change_note": f"wording {number}",
                }
                if number == 3:
                    body["effective_from"] = tomorrow
                await _call(http, "POST", f"/v1/phrases/{key}/versions", editor, body)
                if number == 4:
                    library.versions["draft"] += 1
                    continue
                url = f"/v1/phrases/{key}/versions/{number}"
                await _call(http, "POST", f"{url}/submit", editor)
                await _call(http, "POST", f"{url}/approve", approver, {"comment": "ok"})
                library.versions["approved"] += 1
            if i % 10 == 0:
                reason = {"reason": "withdrawn"}
                await _call(http, "POST", f"/v1/phrases/{key}/versions/2/retire", approver, reason)
                library.versions["approved"] -= 1
                library.versions["retired"] += 1

        queue = list(enumerate(library.phrases))

        async def worker() -> None:
            while queue:
                await one(*queue.pop(0))

        await asyncio.gather(*(worker() for _ in range(parallel)))
    return library


def resolve_paths(library: Library) -> list[str]:
    return [
        f"/v1/phrases/{key}/resolve?locale={locale}"
        for key in library.phrases
        for locale in ASKED_LOCALES
    ]


# --- one wrk run ----------------------------------------------------------------------------------


@dataclass
class Run:
    endpoint: str
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers
    server_cpu: float  # share of one core over the window
    wrk_cpu: float
    machine_busy: float
    profile: str = ""


def lua_script(paths: Iterable[str], key: str | None) -> str:
    headers = f'["Authorization"] = "Bearer {key}"' if key else ""
    return LUA % {"paths": ", ".join(json.dumps(p) for p in paths), "headers": headers}


async def wrk(
    procs: Procs,
    tmp: Path,
    name: str,
    base: str,
    script: str,
    seconds: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    lua = tmp / f"{name}.lua"
    lua.write_text(script)
    command = ["wrk", "-t", str(args.threads), "-c", str(args.connections)]
    command += ["-d", f"{seconds:g}s", "--timeout", "5s", "-s", str(lua), base]
    proc = await procs.start(*command, log=tmp / f"wrk-{name}.log")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    finally:
        await procs.stop(proc)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {out.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def measure(
    procs: Procs,
    tmp: Path,
    db: str,
    endpoint: str,
    base: str,
    server: asyncio.subprocess.Process,
    paths: list[str],
    key: str | None,
    args: argparse.Namespace,
) -> Run:
    script = lua_script(paths, key)
    if args.warmup > 0:
        await wrk(procs, tmp, f"{db}-{endpoint}-warmup", base, script, args.warmup, args)
    profiler = None
    profile_out = None
    if args.profile is not None and endpoint != "healthz":
        profile_out = args.profile / f"{db}-{endpoint}.txt"
        spy = str(Path(sys.executable).with_name("py-spy"))
        profiler = await procs.start(
            spy, "record", "-p", str(server.pid), "-d", str(int(args.seconds)), "-r", "250",
            "--nonblocking", "--gil", "-f", "raw", "-o", str(profile_out),
        )  # fmt: skip
        await asyncio.sleep(0.5)  # py-spy attaches
    ticks_before = machine_ticks()
    cpu_before = cpu_seconds(server.pid)
    children_before = os.times()
    wall_before = time.monotonic()
    result = await wrk(procs, tmp, f"{db}-{endpoint}", base, script, args.seconds, args)
    wall = time.monotonic() - wall_before
    children = os.times()
    server_cpu = (cpu_seconds(server.pid) - cpu_before) / wall
    spent = [b - a for a, b in zip(ticks_before, machine_ticks(), strict=True)]
    # wrk is a child of this process: its CPU shows up in our children's times once reaped.
    wrk_cpu = (
        children.children_user
        + children.children_system
        - children_before.children_user
        - children_before.children_system
    ) / wall
    if profiler is not None:
        await asyncio.wait_for(profiler.wait(), args.seconds + 60)
    duration = result["duration_us"] / 1e6
    return Run(
        endpoint=endpoint,
        rps=result["requests"] / duration,
        p50_ms=result["p50"] / 1000,
        p90_ms=result["p90"] / 1000,
        p99_ms=result["p99"] / 1000,
        max_ms=result["max"] / 1000,
        requests=result["requests"],
        errors=sum(result[k] for k in ("connect", "read", "write", "status", "timeout")),
        server_cpu=server_cpu,
        wrk_cpu=wrk_cpu,
        machine_busy=1 - (spent[3] + spent[4]) / (sum(spent) or 1),
        profile=summarize_profile(profile_out) if profile_out and profile_out.exists() else "",
    )


# --- profiles -------------------------------------------------------------------------------------


PACKAGES = (  # where a frame's file lives -> the name it is reported under
    ("service/phrases/", "service.phrases"),
    ("service/access/", "service.access"),
    ("service/", "service (other)"),
    ("fastapi/", "fastapi"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("sqlalchemy/", "sqlalchemy"),
    ("aiosqlite/", "aiosqlite"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
)


def _package(frame: str) -> str:
    if frame.startswith("Runner.run (asyncio/runners.py"):
        return "event loop (uvloop's C code)"  # below this frame py-spy sees no Python
    where = frame.rsplit(" (", 1)[-1]
    return next((name for part, name in PACKAGES if part in where), "other")


def summarize_profile(path: Path, top: int = 12) -> str:
    """Self time by package, and the frames with the most self time, of samples taken while
    the interpreter held the GIL (``py-spy --gil``): what one worker's CPU goes to."""
    by_package: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        n = int(count)
        total += n
        leaf = stack.split(";")[-1]
        by_package[_package(leaf)] += n
        by_frame[leaf.rsplit(":", 1)[0] + ")" if ":" in leaf else leaf] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total} samples holding the GIL; self time by package:"]
    lines.append("  " + ", ".join(f"{p} {n / total:.0%}" for p, n in by_package.most_common()))
    lines.append("  frames with the most self time:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_frame.most_common(top)]
    return "\n".join(lines)


# --- one database ---------------------------------------------------------------------------------


@dataclass
class Result:
    db: str
    seed_seconds: float
    library: Library
    runs: list[Run]


async def run_database(kind: str, args: argparse.Namespace) -> Result:
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix=f"bench-api-{kind}-") as name:
        tmp = Path(name)
        try:
            async with database(kind, tmp, args.postgres_url) as url:
                admin = secrets.token_urlsafe(24)
                server, base = await start_service(procs, tmp, url, admin)
                started = time.monotonic()
                library = await seed(base, admin, args.phrases)
                seeded = time.monotonic() - started
                agent = library.keys["agent"]
                listing = await list_paths_async(library, base)
                plan: list[tuple[str, list[str], str | None]] = [
                    ("healthz", ["/healthz"], None),
                    ("resolve", resolve_paths(library), agent),
                    ("list", listing, agent),
                ]
                runs = []
                for endpoint, paths, key in plan:
                    print(f"{kind}: {endpoint} ...", file=sys.stderr, flush=True)
                    runs.append(
                        await measure(procs, tmp, kind, endpoint, base, server, paths, key, args)
                    )
                await procs.stop_all()
                return Result(kind, seeded, library, runs)
        except BaseException:
            log = tmp / "service.log"
            if log.exists():
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            await procs.stop_all()


async def list_paths_async(library: Library, base: str) -> list[str]:
    paths = ["/v1/phrases", "/v1/phrases?limit=50"]
    paths += [f"/v1/phrases?category={c}" for c in CATEGORIES]
    paths += [f"/v1/phrases?tag={t}" for t in TAGS]
    paths += ["/v1/phrases?status=retired", "/v1/phrases?limit=20&category=consent"]
    async with aiohttp.ClientSession(base_url=base) as http:
        cursor = None
        while True:
            url = "/v1/phrases" + (f"?cursor={cursor}" if cursor else "")
            page = await _call(http, "GET", url, library.keys["agent"])
            cursor = page["next_cursor"]
            if not cursor:
                return paths
            paths.append(f"/v1/phrases?cursor={cursor}")


# --- report ---------------------------------------------------------------------------------------


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def table(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"wrk: {args.threads} thread(s), {args.connections} connections, {args.seconds:g} s per "
        f"endpoint after {args.warmup:g} s of warm-up; one `serve` process (one worker).",
        "",
        "| database | endpoint | requests/s | vs healthz | p50 ms | p90 ms | p99 ms | max ms "
        "| errors | server CPU | wrk CPU | machine busy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        reference = next(r.rps for r in result.runs if r.endpoint == "healthz")
        for r in result.runs:
            lines.append(
                f"| {result.db} | {r.endpoint} | **{r.rps:,.0f}** | {r.rps / reference:.2f} "
                f"| {_ms(r.p50_ms)} | {_ms(r.p90_ms)} | **{_ms(r.p99_ms)}** | {_ms(r.max_ms)} "
                f"| {r.errors} of {r.requests:,} | {r.server_cpu:.0%} | {r.wrk_cpu:.0%} "
                f"| {r.machine_busy:.0%} |"
            )
    lines.append("")
    for result in results:
        v = result.library.versions
        lines.append(
            f"{result.db}: library of {len(result.library.phrases)} phrases "
            f"({v['approved']} approved, {v['retired']} retired, {v['draft']} draft versions; "
            f"3 locales), seeded through the API in {result.seed_seconds:.1f} s."
        )
    sqlite = next((x for x in results if x.db == "sqlite"), None)
    if sqlite is not None:
        r = next(r for r in sqlite.runs if r.endpoint == "resolve")
        met = r.rps >= RESOLVE_TARGET_RPS and r.p99_ms < RESOLVE_TARGET_P99_MS and not r.errors
        lines += [
            "",
            f"Target (resolve on SQLite, one worker: at least {RESOLVE_TARGET_RPS:,} requests/s "
            f"with p99 under {RESOLVE_TARGET_P99_MS:g} ms): **{'met' if met else 'missed'}** "
            f"({r.rps:,.0f} requests/s, p99 {r.p99_ms:.2f} ms).",
        ]
    profiles = [r.profile for result in results for r in result.runs if r.profile]
    if profiles:
        lines += ["", "```", *profiles, "```"]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    results = []
    budget = len(args.databases) * (600 + 3 * (2 * args.warmup + args.seconds + 60))
    async with asyncio.timeout(budget):
        for kind in args.databases:
            results.append(await run_database(kind, args))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured, per endpoint")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load before it")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    parser.add_argument("--phrases", type=int, default=200)
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="a database to create ours from")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--profile", type=Path, help="py-spy the server into this folder")
    parser.add_argument("--note", default="", help="a line recorded with the results")
    args = parser.parse_args()
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    if unknown := set(args.databases) - {"sqlite", "postgresql"}:
        parser.error(f"unknown databases: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: apt-get install -y wrk")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    command = shlex.join([".venv/bin/python", "bench/api.py", *sys.argv[1:]])
    results = asyncio.run(main_async(args))
    body = table(results, args)
    if args.note:
        body = f"{args.note}\n\n{body}"
    print(body)
    if not args.no_record:
        record(args.results, command, body, "phrase API")


if __name__ == "__main__":
    main()
