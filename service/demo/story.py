"""``compliance-service demo``: the whole product on a fresh machine, narrated.

A temporary database, the built-in simulator, the service on a free port; then the people of a
compliance team and a voice agent do what they do, through the public API and the official SDK.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential
from pydantic import SecretStr

from service.app import create_app
from service.demo.agent import DemoAgent, silence, tone
from service.kit.serving import serving
from service.settings import Settings

GREETING = "Hello, thank you for calling Contoso Bank. How can I help you today?"
DISCLOSURE = (
    "Before we continue: this call is recorded by {{company}} for quality and training "
    "purposes, and you may ask for a copy of the recording at any time."
)
SESSION = {
    "modalities": ["text", "audio"],
    "turn_detection": {
        "type": "server_vad",
        "interrupt_response": True,
        "create_response": False,  # no LLM in this demo: only what compliance approved is spoken
        "silence_duration_ms": 300,
    },
}


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"  [{time.monotonic() - self.started:5.1f}s] {line}", flush=True)

    def step(self, title: str) -> None:
        print(f"\n== {title}", flush=True)


class Client:
    """The team's HTTP calls, each failing loudly with the service's problem detail."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.keys: dict[str, str] = {}

    async def call(
        self, method: str, path: str, who: str, body: Any = None, **headers: str
    ) -> dict[str, Any]:
        headers["api-key"] = self.keys[who]
        response = await self.http.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} as {who}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result


async def _team(client: Client, say: Narrator) -> None:
    for principal, roles in (
        ("erin.editor", ["editor"]),
        ("arthur.approver", ["approver"]),
        ("voice-agent", ["agent"]),
        ("audrey.auditor", ["auditor"]),
    ):
        made = await client.call(
            "POST", "/v1/api-keys", "admin", {"principal": principal, "roles": roles}
        )
        client.keys[principal] = made["key"]
        say(f"API key for {principal} ({', '.join(roles)})")


async def _approved(client: Client, say: Narrator, key: str, category: str, text: str) -> None:
    title = key.replace("-", " ").capitalize()
    await client.call(
        "POST",
        "/v1/phrases",
        "erin.editor",
        {"key": key, "title": title, "category": category, "default_locale": "en-US"},
    )
    version: dict[str, Any] = {"texts": {"en-US": text}}
    if "{{company}}" in text:
        version["variables"] = [{"name": "company", "max_length": 40}]
    draft = await client.call("POST", f"/v1/phrases/{key}/versions", "erin.editor", version)
    path = f"/v1/phrases/{key}/versions/{draft['number']}"
    await client.call("POST", f"{path}/submit", "erin.editor")
    say(f"erin.editor drafted and submitted {key!r} v{draft['number']}")
    await client.call("POST", f"{path}/approve", "arthur.approver", {"comment": "Legal OK"})
    say("arthur.approver approved it (four eyes: the author cannot approve her own text)")


def _timeline(delivery: dict[str, Any], say: Narrator) -> None:
    origin = datetime.fromisoformat(delivery["requested_at"])

    def at(stamp: str | None) -> str:
        if stamp is None:
            return "-"
        return f"+{(datetime.fromisoformat(stamp) - origin).total_seconds() * 1000:.0f} ms"

    what = delivery["phrase_key"] or delivery["greeting_policy"]
    print(
        f"  {delivery['kind']:<8} {what!s:<22} {delivery['status']:<11} "
        f"attempts={delivery['attempts']} verified={delivery['transcript_verified']} "
        f"played={delivery['played_ms']} ms",
        flush=True,
    )
    print(
        f"           sent {at(delivery['sent_at'])}, started {at(delivery['started_at'])}, "
        f"first audio {at(delivery['first_audio_at'])}, ended {at(delivery['ended_at'])}",
        flush=True,
    )
    for attempt in delivery["attempt_log"]:
        reason = f" - {attempt['reason']}" if attempt["reason"] else ""
        print(
            f"           attempt {attempt['number']}: {attempt['outcome']}, "
            f"{attempt['played_ms']} ms played{reason}",
            flush=True,
        )


async def run_demo(wav_path: Path, speed: float) -> int:
    say = Narrator()
    with tempfile.TemporaryDirectory(prefix="compliance-demo-") as workdir:
        admin_key = "cms_demo_" + secrets.token_urlsafe(24)
        settings = Settings(
            database_url=f"sqlite:///{Path(workdir) / 'demo.db'}",
            bootstrap_admin_key=SecretStr(admin_key),
            simulator_speed=speed,
        )
        say.step("Starting the service (temporary SQLite database, built-in Voice Live simulator)")
        async with (
            serving(create_app(settings)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            say(f"service listening on {base_url}")
            client = Client(http)
            client.keys["admin"] = admin_key
            say.step("The compliance team")
            await _team(client, say)
            say.step("Approved wording")
            await _approved(client, say, "welcome", "greeting", GREETING)
            await _approved(client, say, "recording-disclosure", "disclosure", DISCLOSURE)
            await client.call(
                "POST",
                "/v1/greeting-policies",
                "erin.editor",
                {
                    "name": "bank-welcome",
                    "mode": "pregenerated",
                    "phrase_key": "welcome",
                    "is_default": True,
                },
            )
            say("greeting policy 'bank-welcome' speaks 'welcome' at the start of every call")
            status = await _call(client, say, base_url, wav_path)
            say.step("Audit")
            verdict = await client.call("GET", "/v1/audit/verify", "audrey.auditor")
            say(
                f"hash chain {'intact' if verdict['ok'] else 'BROKEN'}: "
                f"{verdict['checked']} events checked, head {verdict['head_hash'][:16]}..."
            )
            return status if verdict["ok"] else 1


async def _call(client: Client, say: Narrator, base_url: str, wav_path: Path) -> int:
    say.step("A call: the agent connects through the relay with the azure-ai-voicelive SDK")
    async with connect(
        endpoint=base_url,  # the only change from connecting to Azure directly
        credential=AzureKeyCredential(client.keys["voice-agent"]),
        model="gpt-realtime",
        query={"conversation-key": "call-0001", "locale": "en-US"},
    ) as connection:
        agent = DemoAgent(connection, say)
        agent.start()
        try:
            greeted = agent.when("response.done")
            await connection.session.update(session=SESSION)
            await agent.updated.wait()
            say("session configured; the service sends the approved greeting first")
            await asyncio.wait_for(greeted, 60)
            session = await client.call("GET", f"/v1/sessions/{agent.voicelive_id}", "voice-agent")

            say.step("The agent asks for the recording disclosure over HTTP (non-interruptible)")
            body = {
                "phrase_key": "recording-disclosure",
                "variables": {"company": "Contoso Bank"},
                "interruptible": False,
            }
            started = agent.when("response.audio.delta")
            request = asyncio.create_task(
                client.call(
                    "POST",
                    f"/v1/sessions/{session['id']}/deliveries",
                    "voice-agent",
                    {**body, "wait": 60},
                    **{"Idempotency-Key": "call-0001-disclosure"},
                )
            )
            await asyncio.wait_for(started, 30)
            await asyncio.sleep(1.0)
            say("the caller talks over the disclosure...")
            await agent.speak(tone(600) + silence(500))
            delivery = await asyncio.wait_for(request, 90)
            say(f"disclosure delivery {delivery['id']}: {delivery['status']}")
            say.step("Delivery timelines (GET /v1/sessions/{id}/deliveries)")
            listing = await client.call(
                "GET", f"/v1/sessions/{session['id']}/deliveries", "voice-agent"
            )
            for item in listing["items"]:
                _timeline(item, say)
        finally:
            await agent.stop()
    seconds = agent.write_wav(wav_path)
    say(f"wrote the {seconds:.1f} s of audio the agent received to {wav_path}")
    ok = delivery["status"] == "completed" and delivery["transcript_verified"]
    return 0 if ok else 1


def main(wav_path: str, speed: float) -> int:
    try:
        return asyncio.run(run_demo(Path(wav_path), speed))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the demo is a story for people: say what broke, plainly
        print(f"\ndemo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
