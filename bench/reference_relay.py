"""The benchmark's reference relay: the least a WebSocket relay can do, written only to measure
the service's relay against. aiohttp server and client, two pumps, no parsing, no
authentication, no records, permessage-deflate off both ways (as the service's relay).

    python -m bench.reference_relay --upstream ws://127.0.0.1:P/voice-live/realtime

Prints its own URL alone on stdout once listening; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import aiohttp
from aiohttp import web

PATH = "/voice-live/realtime"


async def pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """One direction: every frame as it is, until the source closes."""
    async for message in source:
        if message.type is aiohttp.WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await sink.send_bytes(message.data)


def make_app(upstream_url: str) -> web.Application:
    http: aiohttp.ClientSession | None = None

    async def relay(request: web.Request) -> web.WebSocketResponse:
        assert http is not None
        url = f"{upstream_url}?{request.query_string}" if request.query_string else upstream_url
        async with http.ws_connect(url, headers={"api-key": "bench"}, compress=0) as upstream:
            client = web.WebSocketResponse(compress=False, max_msg_size=0)
            await client.prepare(request)
            tasks = [
                asyncio.create_task(pump(client, upstream)),
                asyncio.create_task(pump(upstream, client)),
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await client.close()
        return client

    async def session(app: web.Application) -> object:
        nonlocal http
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await http.close()

    app = web.Application()
    app.router.add_get(PATH, relay)
    app.cleanup_ctx.append(session)  # type: ignore[arg-type]
    return app


async def serve(upstream_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(make_app(upstream_url), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"ws://127.0.0.1:{port}{PATH}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="the simulator's WebSocket URL")
    args = parser.parse_args()
    try:
        import uvloop  # as the service: uvicorn[standard] brings it
    except ImportError:
        asyncio.run(serve(args.upstream))
    else:
        uvloop.run(serve(args.upstream))


if __name__ == "__main__":
    main()
