"""Serve the app in the current event loop on a free port: what the demo and the end-to-end tests
need (a real socket, no second process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host``; yields its base URL."""
    config = uvicorn.Config(
        app, host=host, port=0, ws_per_message_deflate=False, log_config=None, log_level="warning"
    )
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
