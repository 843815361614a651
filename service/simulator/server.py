"""The simulator's WebSocket server: handshake checks, one ``SimulatorSession`` per connection."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import signal
from collections.abc import Callable
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from service.simulator.audio import Synthesizer
from service.simulator.config import SimulatorConfig
from service.simulator.session import SimulatorSession
from service.simulator.stamps import Latencies, ResponseTimings

logger = logging.getLogger(__name__)

REALTIME_PATH = "/voice-live/realtime"
CLOSE_TIMEOUT_S = 5.0


def _presented_keys(request: Request) -> list[str]:
    """Every credential the handshake carries, in the three places Voice Live reads them."""
    keys = list(request.headers.get_all("api-key"))
    for value in request.headers.get_all("Authorization"):
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token:
            keys.append(token.strip())
    keys += [v for k, v in parse_qsl(urlsplit(request.path).query) if k == "api-key"]
    return keys


class Simulator:
    """A Voice Live stand-in on a real port.

    ``async with Simulator(SimulatorConfig(speed=0)) as sim:`` then
    ``connect(endpoint=sim.endpoint, credential=..., model=...)`` with the official SDK.
    ``sim.sessions`` records every connection; ``sim.configure(...)`` changes the knobs for
    connections opened afterwards.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.sessions: list[SimulatorSession] = []
        self.latencies = Latencies()
        """One-way latencies of stamped caller audio (``SimulatorConfig.stamp_events``)."""
        self.response_timings = ResponseTimings()
        """When each ``response.create`` arrived and its first audio left (``stamp_events``)."""
        self._synth = Synthesizer(self.config.chars_per_second)
        self._server: Server | None = None
        self._port: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = await serve(
            self._serve_connection,
            self.config.host,
            self.config.port,
            process_request=self._check_handshake,
            compression=None,  # audio does not compress; the relay must not pay for deflate
            max_size=self.config.max_message_bytes,
            close_timeout=CLOSE_TIMEOUT_S,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("Voice Live simulator listening on %s", self.endpoint)

    async def stop(self) -> None:
        """Close every connection (1001 going away), wait for their handlers, free the port."""
        server, self._server = self._server, None
        if server is None:
            return
        for session in self.sessions:
            if session.deaf:  # it would never read the close frame: cut it at once
                session.drop(abrupt=True)
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def configure(self, **changes: Any) -> None:
        """Change knobs (``SimulatorConfig`` fields) for connections opened from now on."""
        self.config = dataclasses.replace(self.config, **changes)
        if self._synth.chars_per_second != self.config.chars_per_second:
            self._synth = Synthesizer(self.config.chars_per_second)

    # --- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def endpoint(self) -> str:
        """What the SDK's ``connect(endpoint=...)`` takes (it appends ``/voice-live/realtime``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket URL, for clients other than the SDK."""
        return f"ws://{self.config.host}:{self.port}{REALTIME_PATH}"

    # --- connections --------------------------------------------------------------------------

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse before the WebSocket opens, with a plain HTTP status, as the service does."""
        config = self.config
        if not urlsplit(request.path).path.endswith(REALTIME_PATH):
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if config.refuse_connections:
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "The simulator refuses connections.\n"
            )
        if config.api_key is not None:
            expected = config.api_key.encode()
            presented = _presented_keys(request)
            if not any(hmac.compare_digest(key.encode(), expected) for key in presented):
                return connection.respond(
                    HTTPStatus.UNAUTHORIZED,
                    "Access denied due to invalid subscription key or wrong API endpoint.\n",
                )
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        request = connection.request
        query = dict(parse_qsl(urlsplit(request.path).query)) if request is not None else {}
        query.pop("api-key", None)  # a credential is not a record to keep
        session = SimulatorSession(
            connection,
            self.config,
            self._synth,
            query=query,
            latencies=self.latencies,
            timings=self.response_timings,
        )
        self.sessions.append(session)
        await session.run()


async def run_until_stopped(
    config: SimulatorConfig, ready: Callable[[Simulator], None] | None = None
) -> None:
    """Run a simulator until SIGINT or SIGTERM (the ``simulator`` command)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Simulator(config) as sim:
            if ready is not None:
                ready(sim)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
