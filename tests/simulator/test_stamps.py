"""``stamp_events``: send times in server event ids, one-way latencies of stamped caller audio."""

from __future__ import annotations

import time

from azure.ai.voicelive.models import (
    ServerEventInputAudioBufferCleared,
    ServerEventSessionUpdated,
)

from service.simulator import Simulator, SimulatorConfig
from service.simulator.stamps import Latencies, stamp_of, stamped_id
from tests.simulator.helpers import KEY, caller_audio, peer


class TestStampOf:
    def test_reads_the_stamp_of_an_id_it_made(self) -> None:
        before = time.monotonic_ns()
        stamp = stamp_of(stamped_id())
        assert stamp is not None
        assert before <= stamp <= time.monotonic_ns()

    def test_ids_without_a_stamp_carry_none(self) -> None:
        for event_id in (None, 7, "evt_1", "event_abc_1", "event_12", "event_١٢_x", ""):
            assert stamp_of(event_id) is None
        assert stamp_of("audio_123_9") == 123


class TestLatencies:
    def test_summary_gives_nearest_rank_percentiles_in_ms(self) -> None:
        latencies = Latencies()
        for ms in range(1, 101):
            latencies.add(ms * 1_000_000)
        summary = latencies.summary()
        assert summary["count"] == 100
        assert (summary["p50"], summary["p99"], summary["max"]) == (50.0, 99.0, 100.0)

    def test_keeps_at_most_its_limit(self) -> None:
        latencies = Latencies(limit=2)
        for ns in (1, 2, 3):
            latencies.add(ns)
        assert list(latencies.samples) == [1, 2]
        assert latencies.dropped == 1


async def test_stamped_server_events_and_caller_audio_latencies() -> None:
    config = SimulatorConfig(api_key=KEY, speed=0, stamp_events=True)
    async with Simulator(config) as sim, peer(sim) as client:
        before = time.monotonic_ns()
        await client.send({"type": "session.update", "session": {"turn_detection": None}})
        updated = await client.expect(ServerEventSessionUpdated)
        stamp = stamp_of(updated.event_id)
        assert stamp is not None
        assert before <= stamp <= time.monotonic_ns()

        await client.send({**caller_audio(20, level=0), "event_id": stamped_id("audio")})
        await client.send({**caller_audio(20, level=0), "event_id": "no-stamp"})
        await client.send({"type": "input_audio_buffer.clear"})
        await client.expect(ServerEventInputAudioBufferCleared)

        assert sim.sessions[0].audio_appends == 2
        assert len(sim.latencies.samples) == 1  # only the stamped frame
        assert 0 < sim.latencies.samples[0] < 5_000_000_000


async def test_off_by_default_ids_carry_no_stamp_and_nothing_is_recorded(sim: Simulator) -> None:
    async with peer(sim) as client:
        await client.send({**caller_audio(20, level=0), "event_id": stamped_id("audio")})
        await client.send({"type": "input_audio_buffer.clear"})
        cleared = await client.expect(ServerEventInputAudioBufferCleared)
    assert stamp_of(cleared.event_id) is None
    assert len(sim.latencies.samples) == 0
