"""``compliance-service simulator`` runs the simulator alone, as an operator would start it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from azure.ai.voicelive.aio import connect
from azure.ai.voicelive.models import ServerEventResponseDone, ServerEventSessionCreated
from azure.core.credentials import AzureKeyCredential

from tests.simulator.helpers import say


async def test_simulator_command_serves_the_sdk_and_stops_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "simulator",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "COMPLIANCE_LOG_LEVEL": "WARNING"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            endpoint = (await process.stdout.readline()).decode().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        async with (
            asyncio.timeout(10),
            connect(endpoint=endpoint, credential=AzureKeyCredential("any"), model="m") as conn,
        ):
            assert isinstance(await conn.recv(), ServerEventSessionCreated)
            await conn.send(say("Hi."))
            async for event in conn:
                if isinstance(event, ServerEventResponseDone):
                    assert event.response.status == "completed"
                    break
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
