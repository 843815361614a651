"""Benchmark agents: raw aiohttp WebSocket clients speaking the Voice Live wire protocol.

One process runs ``--count`` agents. Each connects (to the relay or straight to the simulator),
waits for ``session.created``, and reports ``connected <n>`` on stdout; the driver then writes
``go <t0_ns>`` on stdin, ``t0`` being a ``time.monotonic_ns()`` a little in the future. From
``t0`` each agent turns turn detection off, asks for one long pre-generated reply (the simulator
streams it as 20 ms audio deltas, 50 a second) and sends 20 ms of silence 50 times a second, at
its own random phase. Frames sent within the measurement window carry their send time in
``event_id``; each audio delta carries the simulator's send time in its own, read with a
substring search (no JSON parse). At the end the process writes its figures to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FRAME_S = 0.020
FRAME_NS = 20_000_000
SILENCE = base64.b64encode(bytes(960)).decode("ascii")  # 20 ms of PCM16 at 24 kHz
# The SDK's own layout (json.dumps defaults, ``type`` last), so the relay sees what it would see.
APPEND_HEAD = '{"audio": "' + SILENCE + '", "event_id": "'
APPEND_TAIL = '", "type": "input_audio_buffer.append"}'
DELTA_MARK = '"type": "response.audio.delta"'
STAMP_MARK = '"event_id": "event_'
CHARS_PER_SECOND = 15  # the simulator's default speech rate


@dataclass
class Figures:
    down_ns: list[int] = field(default_factory=list)  # upstream -> agent, stamped in window
    lag_ns: list[int] = field(default_factory=list)  # how late each window send left
    sent: int = 0
    deltas: int = 0
    deltas_in_window: int = 0
    errors: int = 0
    replies_ended: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    url: str
    headers: dict[str, str]
    warmup_s: float
    seconds: float
    t0_ns: int = 0

    @property
    def window(self) -> tuple[int, int]:
        start = self.t0_ns + int(self.warmup_s * 1e9)
        return start, start + int(self.seconds * 1e9)


def _control(reply_seconds: float) -> tuple[str, str]:
    update = {"type": "session.update", "session": {"turn_detection": None}}
    text = "The quick brown fox jumps over the lazy dog. " * (
        int(reply_seconds * CHARS_PER_SECOND) // 45 + 1
    )
    message = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}
    create = {"type": "response.create", "response": {"pre_generated_assistant_message": message}}
    return json.dumps(update), json.dumps(create)


async def _read(ws: aiohttp.ClientWebSocketResponse, plan: Plan, figures: Figures) -> None:
    start, end = plan.window
    while True:
        message = await ws.receive()
        now = time.monotonic_ns()
        if message.type is not aiohttp.WSMsgType.TEXT:
            return
        frame: str = message.data
        if frame.find(DELTA_MARK, 0, 200) >= 0:
            figures.deltas += 1
            at = frame.find(STAMP_MARK, 0, 200)
            if at >= 0:
                at += len(STAMP_MARK)
                stamp = int(frame[at : frame.index("_", at)])
                if start <= stamp < end:
                    figures.deltas_in_window += 1
                    figures.down_ns.append(now - stamp)
        elif '"type": "error"' in frame:
            figures.errors += 1
        elif '"type": "response.done"' in frame:
            figures.replies_ended += 1


async def _write(ws: aiohttp.ClientWebSocketResponse, plan: Plan, figures: Figures) -> None:
    start, end = plan.window
    due = plan.t0_ns + random.randrange(FRAME_NS)  # noqa: S311 - a phase, not a secret
    n = 0
    while due < end:
        delay = due - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        sent = time.monotonic_ns()
        stamped = start <= due
        event_id = f"audio_{sent}_{n}" if stamped else f"warm_{n}"
        await ws.send_str(APPEND_HEAD + event_id + APPEND_TAIL)
        if stamped:
            figures.lag_ns.append(sent - due)
        figures.sent += 1
        n += 1
        due += FRAME_NS


class Roll:
    """Which agents have connected (1) or failed to (0); ``done`` once every agent has said."""

    def __init__(self, expected: int) -> None:
        self.answers: list[int] = []
        self.expected = expected
        self.done = asyncio.Event()

    def tell(self, connected: int) -> None:
        self.answers.append(connected)
        if len(self.answers) >= self.expected:
            self.done.set()


async def _agent(
    http: aiohttp.ClientSession,
    plan_box: list[Plan],
    connected: asyncio.Semaphore,
    go: asyncio.Event,
    figures: Figures,
    roll: Roll,
) -> None:
    try:
        async with connected:
            ws = await http.ws_connect(
                plan_box[0].url,
                headers=plan_box[0].headers,
                compress=0,
                max_msg_size=16 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
            )
            first = await asyncio.wait_for(ws.receive(), 30)
            if first.type is not aiohttp.WSMsgType.TEXT or "session.created" not in first.data:
                raise ConnectionError(f"no session.created: {first.type} {first.data!r:.200}")
    except Exception as exc:
        figures.failed.append(f"{type(exc).__name__}: {exc}"[:300])
        roll.tell(0)
        return
    roll.tell(1)
    try:
        await go.wait()
        plan = plan_box[0]
        update, create = _control(plan.warmup_s + plan.seconds + 30)
        await ws.send_str(update)
        await ws.send_str(create)
        reader = asyncio.create_task(_read(ws, plan, figures))
        await _write(ws, plan, figures)
        await asyncio.sleep(1.0)  # what is still on its way arrives
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await reader
        if reader.done() and not reader.cancelled() and reader.exception() is not None:
            figures.failed.append(f"reader: {reader.exception()!r}"[:300])
    except Exception as exc:
        figures.failed.append(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"api-key": args.key} if args.key else {}
    plan_box = [Plan(args.url, headers, args.warmup, args.seconds)]
    figures = Figures()
    go = asyncio.Event()
    roll = Roll(args.count)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)  # the default pool stops at 100 connections
    async with aiohttp.ClientSession(connector=connector) as http:
        connected = asyncio.Semaphore(args.connect_concurrency)
        agents = [
            asyncio.create_task(_agent(http, plan_box, connected, go, figures, roll))
            for _ in range(args.count)
        ]
        await roll.done.wait()
        print(f"connected {sum(roll.answers)}", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        word, _, t0 = line.partition(" ")
        if word != "go":
            raise SystemExit(f"expected 'go <t0_ns>', got {line!r}")
        plan_box[0] = Plan(args.url, headers, args.warmup, args.seconds, int(t0))
        go.set()
        await asyncio.gather(*agents)
    return {
        "down_us": [ns // 1000 for ns in figures.down_ns],
        "lag_us": [ns // 1000 for ns in figures.lag_ns],
        "sent": figures.sent,
        "deltas": figures.deltas,
        "deltas_in_window": figures.deltas_in_window,
        "errors": figures.errors,
        "replies_ended": figures.replies_ended,
        "connected": sum(roll.answers),
        "failed": figures.failed[:20],
        "failures": len(figures.failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default=None)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connect-concurrency", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
