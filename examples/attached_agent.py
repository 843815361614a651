"""An agent that keeps its own Voice Live connection and lets the compliance service speak an
approved phrase into it (README: "Attached sessions").

    python examples/attached_agent.py --agent-key KEY --phrase call-recording --variable name=Alex

It connects to Voice Live with the official SDK, attaches the connection to the service,
configures its session, asks the service over HTTP to speak the phrase, and prints the events it
sees (never audio) and the delivery's final record. Exit code 1 unless the delivery completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterable
from typing import Any

import httpx
from azure.ai.voicelive import models as vl
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential

from service.connector import AttachError, attach

SESSION = vl.RequestSession(
    modalities=[vl.Modality.TEXT, vl.Modality.AUDIO],
    instructions="You are the voice assistant of Contoso Bank.",
    input_audio_format=vl.InputAudioFormat.PCM16,
    output_audio_format=vl.OutputAudioFormat.PCM16,
    turn_detection=vl.ServerVad(threshold=0.5, silence_duration_ms=500),
)
DELIVERY_WAIT = 60.0  # seconds the service may take to speak the phrase (at most 120)


async def follow(events: AsyncIterable[Any], configured: asyncio.Event) -> None:
    """The agent's event loop: print what happens, never the audio itself."""
    audio_chunks = 0
    async for event in events:
        kind = str(event.type)
        if kind == "response.audio.delta":
            audio_chunks += 1
            continue
        detail = ""
        if kind == "response.audio.done":
            detail, audio_chunks = f" ({audio_chunks} audio chunks, not shown)", 0
        elif kind == "response.audio_transcript.done":
            detail = f": {event.transcript!r}"
        elif kind == "error":
            detail = f": {event.error.message}"
        print(f"event {kind}{detail}", flush=True)
        if kind == "session.updated":
            configured.set()
    print("the Voice Live connection closed", flush=True)


async def deliver(args: argparse.Namespace, session_id: str) -> dict[str, Any] | None:
    """Ask the service to speak the phrase, and wait for its final record."""
    body = {"phrase_key": args.phrase, "variables": dict(args.variable), "wait": DELIVERY_WAIT}
    async with httpx.AsyncClient(
        base_url=args.service_url, headers={"api-key": args.agent_key}, timeout=DELIVERY_WAIT + 10
    ) as http:
        response = await http.post(f"/v1/sessions/{session_id}/deliveries", json=body)
    if response.is_error:
        print(f"the service refused the delivery ({response.status_code}): {response.text}")
        return None
    record: dict[str, Any] = response.json()
    return record


async def run(args: argparse.Namespace) -> int:
    async with (
        connect(
            endpoint=args.voicelive_endpoint,
            credential=AzureKeyCredential(args.voicelive_key),
            model=args.model,
        ) as connection,
        attach(
            connection,
            service_url=args.service_url,
            api_key=args.agent_key,
            conversation_key=args.conversation_key,
            locale=args.locale,
            greeting=args.greeting,
            model=args.model,
        ) as attached,
    ):
        print(f"attached: service session {attached.id}", flush=True)
        configured = asyncio.Event()
        reader = asyncio.create_task(follow(attached, configured))
        try:
            await connection.session.update(session=SESSION)
            async with asyncio.timeout(30):
                await configured.wait()
            record = await deliver(args, attached.id)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    if record is None:
        return 1
    shown = ("id", "status", "text", "transcript", "transcript_verified", "failure_reason")
    print("delivery:", json.dumps({name: record[name] for name in shown}), flush=True)
    return 0 if record["status"] == "completed" else 1


def variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main() -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Attach a Voice Live connection; speak a phrase.")
    parser.add_argument("--service-url", default=env("SERVICE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--agent-key", default=env("AGENT_KEY"), help="a key with the agent role")
    parser.add_argument(
        "--voicelive-endpoint", default=env("VOICELIVE_ENDPOINT", "http://127.0.0.1:8765")
    )
    parser.add_argument("--voicelive-key", default=env("VOICELIVE_API_KEY", "simulator"))
    parser.add_argument("--model", default="gpt-realtime")
    parser.add_argument("--conversation-key", default=f"example-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--locale", default="en-US")
    parser.add_argument("--greeting", help="greeting policy name, or none; default: the default")
    parser.add_argument("--phrase", default="call-recording", help="the approved phrase's key")
    parser.add_argument("--variable", type=variable, action="append", default=[])
    args = parser.parse_args()
    if not args.agent_key:
        parser.error("give --agent-key or set AGENT_KEY")
    try:
        return asyncio.run(run(args))
    except AttachError as exc:  # a bad key, an unknown greeting policy, no service there
        print(f"error: {exc}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
