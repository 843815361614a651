"""Opening the upstream Voice Live session with the official SDK and the service's own credential.

The agent authenticates to the service with a service key; the service authenticates to Voice Live
with its own API key, or with Entra ID (azure-identity's DefaultAzureCredential) when none is set.
The built-in simulator takes any key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
from azure.ai.voicelive.aio import VoiceLiveConnection, connect
from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from service.relay.frames import ConnectRequest
from service.simulator import Simulator, SimulatorConfig

log = logging.getLogger("service.relay")

DEFAULT_API_VERSION = "2026-04-10"
SIMULATOR_KEY = "simulator"  # the built-in simulator accepts any key; the SDK needs one


class UpstreamUnavailable(Exception):
    """The upstream refused or could not be reached; the message says why, without secrets."""


@dataclass
class Upstream:
    """Where relayed sessions go. Without an endpoint it is the built-in simulator, started on
    first use (so that a service that never relays never opens the port)."""

    endpoint: str | None
    credential: AzureKeyCredential | AsyncTokenCredential
    max_message_bytes: int
    connect_timeout: float = 10.0
    simulator_speed: float = 1.0
    _simulator: Simulator | None = None
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)
    _late: set[asyncio.Future[VoiceLiveConnection]] = field(default_factory=set)

    async def _endpoint(self) -> str:
        if self.endpoint is not None:
            return self.endpoint
        async with self._starting:
            if self._simulator is None:
                simulator = Simulator(SimulatorConfig(speed=self.simulator_speed))
                await simulator.start()
                self._simulator = simulator
                log.info("built-in Voice Live simulator listening on %s", simulator.endpoint)
        return self._simulator.endpoint

    async def open(self, request: ConnectRequest) -> VoiceLiveConnection:
        manager = connect(
            endpoint=await self._endpoint(),
            credential=self.credential,
            api_version=request.api_version or DEFAULT_API_VERSION,
            model=request.model,
            query=request.extra_query,
            connection_options={
                "compression": False,  # audio does not compress; deflate costs ~28% relay CPU
                "max_msg_size": self.max_message_bytes,
                "heartbeat": 30.0,
            },
        )
        # Cancelling the SDK mid-handshake would leak its aiohttp session (it closes it only on a
        # ClientError), so an opening that takes too long is left to finish or fail on its own
        # (see _settle) while the agent is told now.
        opening = asyncio.ensure_future(manager.__aenter__())
        try:
            return await asyncio.wait_for(asyncio.shield(opening), self.connect_timeout)
        except TimeoutError:
            self._late.add(opening)
            opening.add_done_callback(self._settle)
            raise UpstreamUnavailable(
                f"the upstream Voice Live endpoint did not answer within {self.connect_timeout:g} s"
            ) from None
        except (VoiceLiveConnectionError, ConnectionError, OSError) as exc:
            raise UpstreamUnavailable(_why(exc)) from None
        except ClientAuthenticationError:
            raise UpstreamUnavailable(
                "the service could not get an Entra ID token for Voice Live (no API key is "
                "configured: set COMPLIANCE_VOICELIVE_API_KEY or an Azure identity)"
            ) from None

    @property
    def late_openings(self) -> int:
        """Openings the agent stopped waiting for that have not finished yet."""
        return len(self._late)

    def _settle(self, opening: asyncio.Future[VoiceLiveConnection]) -> None:
        """A late opening ended: close what it opened (nobody will use it); its failure is
        expected and already reported to the agent."""
        self._late.discard(opening)
        if opening.cancelled() or opening.exception() is not None:
            return
        closing = asyncio.ensure_future(opening.result().close())
        closing.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def close(self) -> None:
        for opening in list(self._late):
            opening.cancel()
        if self._simulator is not None:
            await self._simulator.stop()
        closer: Any = getattr(self.credential, "close", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()


def _why(exc: BaseException) -> str:
    """A short reason from aiohttp's error text (status and message, never headers)."""
    text = str(exc)
    cause = exc.__cause__
    status = getattr(cause, "status", None)
    if status is not None:
        message = getattr(cause, "message", "") or ""
        return f"the upstream Voice Live endpoint answered HTTP {status} {message}".strip()
    if "Cannot connect" in text or isinstance(cause, OSError):
        return "the upstream Voice Live endpoint cannot be reached"
    return "the upstream Voice Live session could not be opened"


def make_credential(
    endpoint: str | None, api_key: str | None
) -> AzureKeyCredential | AsyncTokenCredential:
    if api_key:
        return AzureKeyCredential(api_key)
    if endpoint is None:
        return AzureKeyCredential(SIMULATOR_KEY)
    from azure.identity.aio import DefaultAzureCredential  # only loaded where it is used

    return DefaultAzureCredential()
