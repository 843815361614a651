"""``stamp_events``: when each ``response.create`` arrived and its first audio delta left."""

from __future__ import annotations

import time

from azure.ai.voicelive.models import (
    ServerEventError,
    ServerEventResponseAudioDelta,
    ServerEventResponseCreated,
    ServerEventResponseDone,
)

from service.simulator import Simulator, SimulatorConfig
from service.simulator.stamps import ResponseTiming, ResponseTimings, stamp_of
from tests.simulator.helpers import KEY, peer, say


async def test_each_request_gets_its_arrival_and_the_stamp_of_its_first_audio() -> None:
    config = SimulatorConfig(api_key=KEY, speed=0, stamp_events=True)
    async with Simulator(config) as sim, peer(sim) as client:
        await client.send({"type": "session.update", "session": {"turn_detection": None}})
        before = time.monotonic_ns()
        await client.send(say("Recorded.", metadata={"compliance_delivery_id": "dlv_1"}))
        seen, done = await client.until(ServerEventResponseDone)
        await client.send(say("Again.", metadata={"compliance_delivery_id": "dlv_2"}))
        await client.until(ServerEventResponseDone)

    first, second = sim.response_timings.items
    created = next(e for e in seen if isinstance(e, ServerEventResponseCreated))
    audio = [e for e in seen if isinstance(e, ServerEventResponseAudioDelta)]
    assert first.response_id == done.response.id
    assert first.metadata == {"compliance_delivery_id": "dlv_1"}
    assert first.session_id == sim.sessions[0].id
    assert before <= first.requested_ns <= (stamp_of(created.event_id) or 0)
    assert first.first_audio_ns == stamp_of(audio[0].event_id)  # the first delta, not a later one
    assert second.metadata == {"compliance_delivery_id": "dlv_2"}
    assert second.first_audio_ns is not None
    assert second.first_audio_ns > second.requested_ns


async def test_a_refused_request_and_a_cancelled_one_leave_no_first_audio() -> None:
    config = SimulatorConfig(api_key=KEY, speed=1, stamp_events=True, answer_delay=0.2)
    async with Simulator(config) as sim, peer(sim) as client:
        await client.send({"type": "session.update", "session": {"turn_detection": None}})
        await client.send(say("A long reply that is cancelled before any audio."))
        await client.send(say("Refused: one is active.", cancel_previous=False))
        await client.until(ServerEventError)
        await client.send({"type": "response.cancel"})
        await client.until(ServerEventResponseDone)

    (only,) = sim.response_timings.items  # the refused request started no response
    assert only.first_audio_ns is None


async def test_off_by_default_nothing_is_timed(sim: Simulator) -> None:
    async with peer(sim) as client:
        await client.send(say("Recorded."))
        await client.until(ServerEventResponseDone)
    assert sim.response_timings.items == []


def test_timings_keep_at_most_their_limit() -> None:
    timings = ResponseTimings(limit=1)
    for n in range(3):
        timings.add(ResponseTiming("sess", f"resp_{n}", None, n))
    assert [t.response_id for t in timings.items] == ["resp_0"]
    assert timings.dropped == 2
