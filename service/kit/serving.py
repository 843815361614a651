"""Serve the app in the current event loop on a free port: what the demo and the end-to-end tests
need (a real socket, no second process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from service.kit.logs import quiet_websocket_denials
from service.settings import Settings


def server_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the app: the same for ``serve``, the demo and the tests."""
    quiet_websocket_denials()
    return {
        "log_config": None,  # the service's own JSON logging (kit/logs.py)
        "ws_per_message_deflate": False,  # audio does not compress; deflate only costs CPU
        # An agent's WebSocket message over the limit closes its connection with 1009.
        "ws_max_size": settings.relay_max_message_bytes,
    }


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host``; yields its base URL."""
    options = server_options(app.state.settings)
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
