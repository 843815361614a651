"""Voice Live sends garbage in the middle of a phrase: text that is not JSON, JSON that is no
event, events of unknown types, known events with missing or mistyped fields, binary frames.
The relay passes every frame on untouched (the README's promise: frames pass both ways
untouched), the phrase still completes with its record, the session stays up, and nothing is
logged as an error."""

from __future__ import annotations

import contextlib
import json

import aiohttp
import pytest

from service.simulator import SimulatorConfig
from tests.attached.support import session_of, until_closed
from tests.faults.support import (
    FINAL,
    audit_verifies,
    logged_errors,
    raw_agent,
)
from tests.live.harness import Live, relay_only, upstream_of

TEXT = "This call is recorded for quality and training purposes."
# What a broken upstream (or a proxy in front of it) could send. None of it is an event the
# service acts on; all of it must reach the agent as it was sent.
GARBAGE: tuple[str | bytes, ...] = (
    "this is not JSON at all",
    '{"type": "response.done", "response": {"id": "resp_cut',  # cut off mid-frame
    '["a", "list", "is", "no", "event"]',
    '"a string"',
    '{"no": "type"}',
    '{"type": 42}',
    '{"type": "response.telepathy.delta", "delta": "?"}',  # a type nobody knows (yet)
    "",
    b"\x00\xff\xfe binary, and not even UTF-8",
    b'{"type": "response.done", "response": {"id": "x", "status": "failed"}}',  # JSON, binary
)
# Known events without the members the service reads: nothing in them to act on.
INCOMPLETE: tuple[str, ...] = (
    '{"type": "response.created"}',
    '{"type": "response.done"}',
    '{"type": "response.output_item.added"}',
    '{"type": "response.audio_transcript.done"}',
    '{"type": "conversation.item.truncated", "item_id": "item_nope"}',
    '{"type": "error"}',
    '{"type": "session.updated", "session": null}',
    '{"type": "response.audio.delta"}',
    '{"type": "response.audio.delta", "delta": 12}',
)
# Known events whose members have the wrong JSON type.
MISTYPED: tuple[str, ...] = (
    '{"type": "response.created", "response": "not an object"}',
    '{"type": "response.done", "response": 42}',
    '{"type": "response.output_item.added", "response_id": 7, "item": "x"}',
    '{"type": "session.updated", "session": ["x"]}',
    '{"type": "error", "error": "boom"}',
)
# For the relay's plain agent (no session.update): session.created, then the delivery's
# response.created, output_item.added, conversation.item.created, content_part.added, the
# transcript delta and its first audio delta: the garbage arrives while the phrase is heard.
MID_PHRASE_RAW = 7
# For an SDK agent, which configures its session first (session.updated is the 2nd event).
MID_PHRASE_SDK = MID_PHRASE_RAW + 1
BINARY = aiohttp.WSMsgType.BINARY


def injecting(frames: tuple[str | bytes, ...], after: int) -> SimulatorConfig:
    return SimulatorConfig(speed=20, inject_after_events=after, inject_frames=frames)


@relay_only
class TestRelayPassesGarbageOn:
    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return injecting(GARBAGE + INCOMPLETE, MID_PHRASE_RAW)

    async def test_garbage_mid_phrase_reaches_the_agent_untouched_and_the_phrase_completes(
        self, live: Live, caplog: pytest.LogCaptureFixture
    ) -> None:
        await live.approved_phrase("recording", TEXT)
        async with raw_agent(live) as agent:
            queued = await live.deliver(agent.session_id, "recording")
            record = await live.until_delivery(queued["id"], "completed", "failed", "interrupted")
            assert (await session_of(live, agent.session_id))["state"] == "live"
            upstream = upstream_of(live, agent)
        closed = await until_closed(live, agent.session_id)

        sent = GARBAGE + INCOMPLETE
        assert upstream.frames_injected == len(sent)
        received = [data for _, data in agent.frames]
        start = received.index(GARBAGE[0])
        end = start + len(sent)
        assert received[start:end] == list(sent)  # every frame, in order, byte for byte
        binary = [i for i, (kind, _) in enumerate(agent.frames[start:end]) if kind is BINARY]
        assert binary == [i for i, frame in enumerate(sent) if isinstance(frame, bytes)]
        # In the middle of the phrase: its audio before and after, then its one response.done.
        before, after = event_types(agent.frames[:start]), event_types(agent.frames[end:])
        assert "response.audio.delta" in before
        assert "response.audio.delta" in after
        assert (before + after).count("response.done") == 1
        assert after[-1] == "response.done"

        assert record["status"] == "completed"
        assert record["transcript_verified"] is True
        assert record["failure_reason"] is None
        assert record["attempts"] == 1
        assert closed["end_reason"] == "the agent closed the connection (1000)"
        assert logged_errors(caplog) == []
        await audit_verifies(live)


class TestIncompleteEvents:
    """For both kinds: through the relay, and reported by an attached agent's connector (the SDK
    parses such events leniently and hands them to the agent's loop)."""

    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return injecting(INCOMPLETE, MID_PHRASE_SDK)

    async def test_known_events_missing_their_fields_are_ignored(
        self, live: Live, caplog: pytest.LogCaptureFixture
    ) -> None:
        await live.approved_phrase("recording", TEXT)
        async with live.agent() as agent:
            queued = await live.deliver(agent.session_id, "recording")
            record = await live.until_delivery(queued["id"], "completed", "failed", "interrupted")
            assert (await session_of(live, agent.session_id))["state"] == "live"
            assert upstream_of(live, agent).frames_injected == len(INCOMPLETE)
        assert record["status"] == "completed"
        assert record["transcript_verified"] is True
        assert logged_errors(caplog) == []
        await audit_verifies(live)


@relay_only
class TestMistypedEventsRelayed:
    """Each mistyped event on its own, so that a partial fix shows which are left."""

    @pytest.fixture(params=MISTYPED, ids=[json.loads(m)["type"] for m in MISTYPED])
    def simulator_config(self, request: pytest.FixtureRequest) -> SimulatorConfig:
        return injecting((request.param,), MID_PHRASE_SDK)

    async def test_a_known_event_with_mistyped_fields_does_not_end_the_session(
        self, live: Live, caplog: pytest.LogCaptureFixture
    ) -> None:
        await phrase_survives(live, caplog, injected=1)


class TestMistypedEventsAttached:
    """All of them at once: an attached session that fails here takes seconds to give up."""

    @pytest.fixture
    def session_kind(self) -> str:
        return "attached"

    @pytest.fixture
    def simulator_config(self) -> SimulatorConfig:
        return injecting(MISTYPED, MID_PHRASE_SDK)

    async def test_known_events_with_mistyped_fields_do_not_end_the_session(
        self, live: Live, caplog: pytest.LogCaptureFixture
    ) -> None:
        await phrase_survives(live, caplog, injected=len(MISTYPED))


async def phrase_survives(live: Live, caplog: pytest.LogCaptureFixture, *, injected: int) -> None:
    """A phrase spoken while the garbage (``injected`` frames) arrives completes, and the
    session stays up."""
    await live.approved_phrase("recording", TEXT)
    async with live.agent() as agent:
        queued = await live.deliver(agent.session_id, "recording")
        record = await live.until_delivery(queued["id"], *FINAL, within=3)
        assert (await session_of(live, agent.session_id))["state"] == "live"
        assert upstream_of(live, agent).frames_injected == injected  # the garbage did arrive
    assert record["status"] == "completed", record["failure_reason"]
    assert record["transcript_verified"] is True
    assert logged_errors(caplog) == []


def event_types(frames: list[tuple[aiohttp.WSMsgType, str | bytes]]) -> list[str]:
    """The types of the simulator's own events among ``frames`` (each has an ``event_id``)."""
    types = []
    for kind, data in frames:
        if kind is aiohttp.WSMsgType.TEXT:
            with contextlib.suppress(ValueError):
                event = json.loads(data)
                if isinstance(event, dict) and isinstance(event.get("event_id"), str):
                    types.append(event["type"])
    return types
