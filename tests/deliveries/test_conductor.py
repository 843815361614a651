"""The delivery rules of one live session (``Conductor``), driven by the server events Voice Live
sends for each ``response.create`` and checked on the effects they return.

Each scenario plays a call: ``Call`` holds a conductor, a clock, and builders for the events of
the protocol (response.created -> output_item.added -> audio -> transcript -> response.done).
``echo`` says whether the upstream echoes ``metadata`` in ``response.created`` (UNVERIFIED for
Voice Live, so every correlation rule is checked both ways).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.deliveries.conductor import (
    COLLISION,
    COLLISION_RETRY_SECONDS,
    MAX_COLLISIONS,
    Conductor,
)
from service.deliveries.states import Priority, Status
from service.deliveries.tracking import (
    METADATA_KEY,
    AnswerTimer,
    Effect,
    Record,
    RetryLater,
    Send,
    SilenceTimer,
    Tracked,
)

T0 = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)
PCM16_BYTES_PER_SECOND = 48_000  # 24 kHz mono 16-bit
Event = dict[str, Any]


def delivery(
    delivery_id: str,
    text: str | None = "Calls are recorded for quality purposes.",
    *,
    priority: Priority = Priority.APPEND,
    interruptible: bool = True,
    max_plays: int = 2,
    greeting: bool = False,
    instructions: str | None = None,
) -> Tracked:
    return Tracked(
        id=delivery_id,
        text=text,
        instructions=instructions,
        priority=priority,
        interruptible=interruptible,
        max_plays=max_plays,
        greeting=greeting,
    )


def state(tracked: Tracked) -> Status:
    """The status now (a call, so that mypy does not keep an earlier assert's narrowing)."""
    return tracked.status


# --- reading effects -----------------------------------------------------------------------------


def sent(effects: list[Effect]) -> list[Event]:
    return [e.event for e in effects if isinstance(e, Send)]


def creates(effects: list[Effect]) -> list[Event]:
    return [e for e in sent(effects) if e["type"] == "response.create"]


def cancels(effects: list[Effect]) -> list[Event]:
    return [e for e in sent(effects) if e["type"] == "response.cancel"]


def created_for(effects: list[Effect]) -> list[str]:
    """The delivery each response.create in ``effects`` speaks, by its metadata."""
    return [e["response"]["metadata"][METADATA_KEY] for e in creates(effects)]


def records(effects: list[Effect], delivery_id: str | None = None) -> list[Record]:
    return [
        e
        for e in effects
        if isinstance(e, Record) and (delivery_id is None or e.delivery_id == delivery_id)
    ]


def actions(effects: list[Effect], delivery_id: str | None = None) -> list[str]:
    return [r.action for r in records(effects, delivery_id)]


def finals(effects: list[Effect]) -> list[Record]:
    return [r for r in records(effects) if r.final]


# --- a call --------------------------------------------------------------------------------------


class Call:
    """One session as the upstream plays it, with a clock (wall ``now`` and monotonic seconds)."""

    def __init__(self, *, echo: bool, ready: bool = True, answer_timeout: float = 5.0) -> None:
        self.conductor = Conductor(answer_timeout=answer_timeout)
        self.echo = echo
        self.seconds = 100.0
        self.requests: dict[str, Event] = {}  # every response.create sent, by delivery id
        if ready:
            self.server({"type": "session.created", "session": {"id": "sess_1"}})

    # clock
    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def tick(self, seconds: float) -> None:
        self.seconds += seconds

    # inputs
    def _seen(self, effects: list[Effect]) -> list[Effect]:
        for event in creates(effects):
            self.requests[event["response"]["metadata"][METADATA_KEY]] = event
        return effects

    def submit(self, tracked: Tracked) -> list[Effect]:
        return self._seen(self.conductor.submit(tracked, self.now))

    def server(self, event: Event) -> list[Effect]:
        return self._seen(self.conductor.on_server_event(event, self.now, self.seconds))

    def client(self, event: Event) -> list[Effect]:
        return self._seen(self.conductor.on_client_event(event, self.now))

    def audio(self, nbytes: int) -> list[Effect]:
        return self.conductor.on_audio(nbytes, self.now, self.seconds)

    def pump(self) -> list[Effect]:
        return self._seen(self.conductor.pump(self.now))

    def resume(self) -> list[Effect]:
        return self._seen(self.conductor.resume(self.now, self.seconds))

    def timeout(self, timer: AnswerTimer) -> list[Effect]:
        return self._seen(
            self.conductor.on_answer_timeout(timer.delivery_id, timer.event_id, self.now)
        )

    def silence(self, timer: SilenceTimer) -> list[Effect]:
        """``timer`` is due now."""
        return self._seen(
            self.conductor.on_silence(timer.delivery_id, timer.response_id, self.now, self.seconds)
        )

    def close(self, reason: str = "the agent hung up") -> list[Effect]:
        return self.conductor.close(self.now, reason)

    # the server's side of a response
    def created(self, rid: str, answering: str | None = None) -> list[Effect]:
        """``response.created`` for ``rid``; ``answering`` names the delivery whose request it
        answers (None: server VAD or the agent started it)."""
        metadata: dict[str, str] | None = None
        if answering is not None and self.echo:
            metadata = self.requests[answering]["response"]["metadata"]
        response: Event = {
            "id": rid,
            "object": "realtime.response",
            "status": "in_progress",
            "output": [],
            "metadata": metadata,
        }
        return self.server({"type": "response.created", "response": response})

    def item(self, rid: str, item_id: str) -> list[Effect]:
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress"}
        event = {"type": "response.output_item.added", "response_id": rid, "output_index": 0}
        return self.server(event | {"item": item | {"content": []}})

    def start(self, rid: str, answering: str | None = None, item_id: str | None = None) -> None:
        self.created(rid, answering)
        self.item(rid, item_id or f"item_{rid}")

    def transcript(self, rid: str, text: str, item_id: str | None = None) -> list[Effect]:
        return self.server(
            {
                "type": "response.audio_transcript.done",
                "response_id": rid,
                "item_id": item_id or f"item_{rid}",
                "output_index": 0,
                "content_index": 0,
                "transcript": text,
            }
        )

    def done(
        self,
        rid: str,
        status: str = "completed",
        details: dict[str, Any] | None = None,
    ) -> list[Effect]:
        response: Event = {"id": rid, "status": status, "status_details": details, "output": []}
        return self.server({"type": "response.done", "response": response})

    def barge_in_done(self, rid: str) -> list[Effect]:
        return self.done(rid, "cancelled", {"type": "cancelled", "reason": "turn_detected"})

    def speech_started(self) -> list[Effect]:
        return self.server({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0})

    def speech_stopped(self) -> list[Effect]:
        return self.server({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900})

    def error(self, event_id: str | None, code: str, message: str = "refused") -> list[Effect]:
        error = {"type": "invalid_request_error", "code": code, "message": message}
        return self.server({"type": "error", "error": error | {"event_id": event_id}})

    def truncated(self, item_id: str, audio_end_ms: int) -> list[Effect]:
        return self.server(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
            }
        )

    def play(self, rid: str, tracked: Tracked, seconds: float = 1.0) -> list[Effect]:
        """Our delivery's response from start to completion, its audio played in real time."""
        self.start(rid, tracked.id)
        self.audio(int(PCM16_BYTES_PER_SECOND * seconds))
        self.tick(seconds)
        self.transcript(rid, tracked.text or "")
        return self.done(rid)

    def learn_echo(self) -> None:
        """One delivery played start to end, so the conductor has seen whether metadata echoes."""
        known = delivery("known")
        self.submit(known)
        self.play("resp_known", known)
        assert state(known) is Status.COMPLETED

    def vad_response(self, rid: str) -> list[Effect]:
        """Server VAD answers the caller with a response of its own."""
        return self.created(rid)


BOTH = pytest.mark.parametrize("echo", [True, False], ids=["echo", "no-echo"])


# --- the request ---------------------------------------------------------------------------------


class TestResponseCreate:
    def test_create_speaks_the_exact_text_and_cancels_nothing(self) -> None:
        text = "This call may be recorded. Say “stop” at any time — we will end it."
        call = Call(echo=True)
        effects = call.submit(delivery("d1", text))

        [send] = [e for e in effects if isinstance(e, Send)]
        assert send.delivery_id == "d1"
        assert send.event == {
            "type": "response.create",
            "event_id": "d1.1",
            "response": {
                "cancel_previous": False,
                "metadata": {METADATA_KEY: "d1", "attempt": "1"},
                "pre_generated_assistant_message": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}],
                },
            },
        }
        assert AnswerTimer("d1", "d1.1") in effects
        [record] = records(effects)
        assert (record.action, record.final, record.fields["status"]) == (
            "delivery.sent",
            False,
            "sent",
        )
        assert record.attempt is not None
        assert record.attempt["event_id"] == "d1.1"

    def test_an_instruction_delivery_asks_the_model_instead(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", None, instructions="Tell the caller about the recording.")
        [event] = creates(call.submit(tracked))
        assert "pre_generated_assistant_message" not in event["response"]
        assert event["response"]["instructions"] == "Tell the caller about the recording."
        assert event["response"]["cancel_previous"] is False

    def test_metadata_fits_the_service_limits(self) -> None:
        call = Call(echo=True)
        [event] = creates(call.submit(delivery("d1")))
        metadata = event["response"]["metadata"]
        assert len(metadata) <= 16
        assert all(isinstance(v, str) and len(v) <= 512 for v in metadata.values())
        assert all(len(k) <= 64 for k in metadata)


# --- queueing ------------------------------------------------------------------------------------


class TestQueueing:
    def test_a_delivery_submitted_before_session_created_waits_for_it(self) -> None:
        call = Call(echo=True, ready=False)
        tracked = delivery("d1")
        effects = call.submit(tracked)
        assert sent(effects) == []
        assert state(tracked) is Status.QUEUED
        assert created_for(call.server({"type": "session.created", "session": {}})) == ["d1"]
        assert state(tracked) is Status.SENT

    @BOTH
    def test_append_waits_for_the_response_in_progress(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.vad_response("resp_vad")
        tracked = delivery("d1")
        assert sent(call.submit(tracked)) == []
        assert state(tracked) is Status.QUEUED
        call.transcript("resp_vad", "Sure, let me check.")
        assert created_for(call.done("resp_vad")) == ["d1"]

    @BOTH
    def test_append_waits_for_our_own_response_to_finish(self, echo: bool) -> None:
        call = Call(echo=echo)
        first, second = delivery("d1"), delivery("d2")
        call.submit(first)
        assert sent(call.submit(second)) == []
        call.start("resp_1", "d1")  # answered: still not our turn while it plays
        assert sent(call.audio(4800)) == []
        assert state(second) is Status.QUEUED
        call.transcript("resp_1", first.text or "")
        assert created_for(call.done("resp_1")) == ["d2"]

    def test_appends_play_in_the_order_submitted(self) -> None:
        call = Call(echo=True)
        tracked = [delivery(f"d{n}") for n in range(1, 4)]
        spoken = [created_for(call.submit(t)) for t in tracked]
        for n, t in enumerate(tracked, start=1):
            spoken.append(created_for(call.play(f"resp_{n}", t)))
        assert [d for batch in spoken for d in batch] == ["d1", "d2", "d3"]
        assert [t.status for t in tracked] == [Status.COMPLETED] * 3

    @BOTH
    def test_speech_started_holds_back_appends_until_speech_stopped(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.speech_started()
        tracked = delivery("d1")
        assert sent(call.submit(tracked)) == []
        assert created_for(call.speech_stopped()) == ["d1"]

    def test_speech_started_does_not_hold_back_an_interrupt(self) -> None:
        call = Call(echo=True)
        call.speech_started()
        assert created_for(call.submit(delivery("urgent", priority=Priority.INTERRUPT))) == [
            "urgent"
        ]

    def test_the_greeting_hold_keeps_everything_back_and_the_greeting_goes_first(self) -> None:
        call = Call(echo=True, ready=False)
        call.conductor.held = True
        call.server({"type": "session.created", "session": {}})
        assert sent(call.submit(delivery("d1"))) == []
        assert sent(call.submit(delivery("urgent", priority=Priority.INTERRUPT))) == []

        call.conductor.held = False  # what the engine does once the greeting is decided
        greeting = delivery("hello", "Welcome to Contoso.", greeting=True)
        assert created_for(call.submit(greeting)) == ["hello"]
        assert created_for(call.play("resp_1", greeting)) == ["urgent"]

    def test_released_hold_with_no_greeting_sends_what_waited(self) -> None:
        call = Call(echo=True)
        call.conductor.held = True
        assert sent(call.submit(delivery("d1"))) == []
        call.conductor.held = False
        assert created_for(call.pump()) == ["d1"]

    def test_a_greeting_goes_ahead_of_deliveries_already_waiting(self) -> None:
        call = Call(echo=True)
        call.vad_response("resp_vad")
        call.submit(delivery("d1"))
        call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        greeting = delivery("hello", "Welcome.", greeting=True)
        call.submit(greeting)
        assert [t.id for t in call.conductor.queue] == ["hello", "urgent", "d1"]


# --- priorities ----------------------------------------------------------------------------------


class TestPriorities:
    @BOTH
    def test_interrupt_cancels_a_response_server_vad_started(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.vad_response("resp_vad")
        effects = call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        assert cancels(effects) == [{"type": "response.cancel", "response_id": "resp_vad"}]
        assert creates(effects) == []  # never while a response is active
        done = call.done(
            "resp_vad", "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        )
        assert created_for(done) == ["urgent"]

    @BOTH
    def test_interrupt_cuts_an_interruptible_delivery_of_ours(self, echo: bool) -> None:
        call = Call(echo=echo)
        playing = delivery("d1", interruptible=True)
        call.submit(playing)
        call.start("resp_1", "d1")
        call.audio(PCM16_BYTES_PER_SECOND)
        call.tick(0.5)
        effects = call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        assert cancels(effects) == [{"type": "response.cancel", "response_id": "resp_1"}]

        done = call.done("resp_1", "cancelled", {"type": "cancelled", "reason": "client_cancelled"})
        assert state(playing) is Status.INTERRUPTED
        [final] = [r for r in finals(done) if r.delivery_id == "d1"]
        assert final.action == "delivery.interrupted"
        assert "urgent" in final.fields["reason"]
        assert playing.failure_reason is None
        assert created_for(done) == ["urgent"]

    @BOTH
    def test_interrupt_never_cancels_a_non_interruptible_delivery(self, echo: bool) -> None:
        call = Call(echo=echo)
        legal = delivery("legal", interruptible=False)
        call.submit(legal)
        call.start("resp_1", "legal")
        call.audio(4800)
        effects = call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        assert sent(effects) == []
        call.tick(1.0)
        call.transcript("resp_1", legal.text or "")
        done = call.done("resp_1")
        assert state(legal) is Status.COMPLETED
        assert created_for(done) == ["urgent"]

    @BOTH
    def test_interrupt_submitted_while_ours_is_in_flight_cancels_it_once_it_starts(
        self, echo: bool
    ) -> None:
        call = Call(echo=echo)
        call.submit(delivery("d1"))
        assert sent(call.submit(delivery("urgent", priority=Priority.INTERRUPT))) == []
        effects = call.created("resp_1", "d1")
        assert cancels(effects) == [{"type": "response.cancel", "response_id": "resp_1"}]

    def test_interrupt_waits_for_a_non_interruptible_delivery_in_flight(self) -> None:
        call = Call(echo=True)
        call.submit(delivery("legal", interruptible=False))
        call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        assert sent(call.created("resp_1", "legal")) == []

    def test_two_interrupts_cancel_the_response_once(self) -> None:
        call = Call(echo=True)
        call.vad_response("resp_vad")
        first = call.submit(delivery("u1", priority=Priority.INTERRUPT))
        second = call.submit(delivery("u2", priority=Priority.INTERRUPT))
        assert len(cancels(first)) == 1
        assert cancels(second) == []

    def test_interrupts_go_ahead_of_appends_and_keep_their_own_order(self) -> None:
        call = Call(echo=True)
        call.vad_response("resp_vad")
        for tracked in (
            delivery("a1"),
            delivery("u1", priority=Priority.INTERRUPT),
            delivery("a2"),
            delivery("u2", priority=Priority.INTERRUPT),
        ):
            call.submit(tracked)
        assert [t.id for t in call.conductor.queue] == ["u1", "u2", "a1", "a2"]

    def test_if_idle_plays_when_nothing_else_does(self) -> None:
        call = Call(echo=True)
        assert created_for(call.submit(delivery("d1", priority=Priority.IF_IDLE))) == ["d1"]

    @BOTH
    def test_if_idle_is_skipped_while_a_response_plays(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.vad_response("resp_vad")
        tracked = delivery("d1", priority=Priority.IF_IDLE)
        effects = call.submit(tracked)
        assert sent(effects) == []
        [final] = finals(effects)
        assert (final.action, final.fields["status"]) == ("delivery.skipped", "skipped")
        assert state(tracked) is Status.SKIPPED
        assert tracked.failure_reason
        assert tracked not in call.conductor.queue
        assert sent(call.done("resp_vad")) == []  # and it never plays later

    def test_if_idle_is_skipped_while_our_delivery_is_in_flight_or_waiting(self) -> None:
        call = Call(echo=True)
        call.submit(delivery("d1"))
        assert actions(call.submit(delivery("i1", priority=Priority.IF_IDLE))) == [
            "delivery.skipped"
        ]
        call.start("resp_1", "d1")
        call.submit(delivery("d2"))
        assert actions(call.submit(delivery("i2", priority=Priority.IF_IDLE))) == [
            "delivery.skipped"
        ]

    def test_if_idle_is_skipped_while_the_caller_speaks(self) -> None:
        call = Call(echo=True)
        call.speech_started()
        assert actions(call.submit(delivery("d1", priority=Priority.IF_IDLE))) == [
            "delivery.skipped"
        ]

    def test_if_idle_is_skipped_when_the_agent_just_asked_for_a_response(self) -> None:
        call = Call(echo=True)
        call.client({"type": "response.create", "event_id": "agent_1"})
        assert actions(call.submit(delivery("d1", priority=Priority.IF_IDLE))) == [
            "delivery.skipped"
        ]


# --- correlation ---------------------------------------------------------------------------------


class TestCorrelation:
    @BOTH
    def test_our_response_is_recognised_and_followed(self, echo: bool) -> None:
        call = Call(echo=echo)
        tracked = delivery("d1")
        call.submit(tracked)
        call.tick(0.2)
        effects = call.created("resp_1", "d1")
        assert actions(effects) == ["delivery.started"]
        assert state(tracked) is Status.STARTED
        assert (tracked.response_id, tracked.plays, tracked.started_at) == ("resp_1", 1, call.now)
        assert call.conductor.inflight is None
        assert call.conductor.tracking_audio
        call.item("resp_1", "item_1")
        assert tracked.item_id == "item_1"
        assert tracked.current is not None
        assert tracked.current.item_id == "item_1"
        assert call.conductor.metadata_echoed is echo

    def test_echoed_metadata_decides_even_against_the_order_of_requests(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.client({"type": "response.create", "event_id": "agent_1"})  # after ours
        call.created("resp_1", "d1")
        assert call.conductor.active_owner is tracked
        call.done("resp_1")
        call.created("resp_agent")  # the agent's, carries none of our metadata
        assert call.conductor.active_owner is None

    def test_metadata_naming_no_delivery_of_this_session_is_not_ours(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        response = {"id": "resp_x", "metadata": {METADATA_KEY: "elsewhere", "attempt": "1"}}
        call.server({"type": "response.created", "response": response})
        assert call.conductor.active_owner is None
        assert state(tracked) is Status.SENT

    def test_without_echo_the_agents_earlier_request_is_answered_first(self) -> None:
        call = Call(echo=False)
        call.client({"type": "response.create", "event_id": "agent_1"})
        tracked = delivery("d1")
        assert sent(call.submit(tracked)) == []  # its response is about to start: wait
        assert actions(call.created("resp_agent")) == []
        assert state(tracked) is Status.QUEUED
        assert call.conductor.active_owner is None
        assert created_for(call.done("resp_agent")) == ["d1"]
        assert actions(call.created("resp_1", "d1")) == ["delivery.started"]
        assert tracked.response_id == "resp_1"

    def test_without_echo_the_agents_later_request_is_answered_after_ours(self) -> None:
        call = Call(echo=False)
        tracked = delivery("d1")
        call.submit(tracked)
        call.client({"type": "response.create", "event_id": "agent_1"})
        call.play("resp_1", tracked)
        assert state(tracked) is Status.COMPLETED
        assert actions(call.created("resp_agent")) == []
        assert call.conductor.active_owner is None
        assert not call.conductor.expected

    def test_without_echo_an_agent_request_that_overtook_ours_on_the_wire_is_answered_first(
        self,
    ) -> None:
        """An attached agent's connector sends our request in its own time: an agent request it
        reports before executing ours went upstream first, and its response comes first."""
        call = Call(echo=False)
        tracked = delivery("d1")
        call.submit(tracked)
        event = {"type": "response.create", "event_id": "agent_1"}
        call._seen(call.conductor.on_client_event(event, call.now, frozenset({"d1"})))
        assert actions(call.created("resp_agent")) == []  # not taken for ours
        assert state(tracked) is Status.SENT
        call.transcript("resp_agent", "Something else entirely.")
        call.done("resp_agent")
        assert actions(call.created("resp_1", "d1")) == ["delivery.started"]
        assert tracked.response_id == "resp_1"

    def test_once_metadata_was_echoed_a_response_without_it_is_not_ours(self) -> None:
        call = Call(echo=True)
        call.learn_echo()
        second = delivery("d2")
        call.submit(second)
        assert actions(call.vad_response("resp_vad")) == []
        assert state(second) is Status.SENT
        assert call.conductor.inflight is second
        assert not call.conductor.tracking_audio

    def test_events_of_another_response_do_not_touch_our_delivery(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        call.item("resp_other", "item_other")
        call.transcript("resp_other", "Something else entirely.")
        call.done("resp_other", "failed", {"type": "failed", "error": {"code": "server_error"}})
        assert (tracked.item_id, tracked.transcript) == ("item_1", None)
        assert state(tracked) is Status.STARTED


# --- collisions ----------------------------------------------------------------------------------


class TestCollisions:
    def test_collision_is_retried_once_the_response_in_the_way_ends(self) -> None:
        call = Call(echo=True)
        call.learn_echo()
        tracked = delivery("d1")
        call.submit(tracked)
        call.vad_response("resp_vad")  # raced ours
        effects = call.error("d1.1", COLLISION, "Conversation already has an active response")
        assert actions(effects) == ["delivery.collided"]
        assert not [e for e in effects if isinstance(e, RetryLater)]  # response.done will do
        assert state(tracked) is Status.QUEUED
        assert tracked.collisions == 1
        assert not any(r.final for r in records(effects))
        assert tracked.current is not None
        assert tracked.current.outcome == "collided"

        [retry] = creates(call.done("resp_vad"))
        assert retry["event_id"] == "d1.2"
        assert retry["response"]["metadata"] == {METADATA_KEY: "d1", "attempt": "2"}
        call.play("resp_1", tracked)
        assert state(tracked) is Status.COMPLETED
        assert tracked.plays == 1

    @BOTH
    def test_collision_with_a_response_not_yet_seen_retries_shortly(self, echo: bool) -> None:
        call = Call(echo=echo)
        tracked = delivery("d1")
        call.submit(tracked)
        effects = call.error("d1.1", COLLISION)
        assert RetryLater(COLLISION_RETRY_SECONDS) in effects
        assert sent(effects) == []
        assert [e["event_id"] for e in creates(call.pump())] == ["d1.2"]

    def test_vad_response_wrongly_taken_for_ours_is_undone_by_the_collision(self) -> None:
        call = Call(echo=False)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_vad", item_id="item_vad")  # server VAD's, taken for ours by order
        assert tracked.plays == 1  # the wrong match, as far as order can tell

        effects = call.error("d1.1", COLLISION)
        assert actions(effects) == ["delivery.collided"]
        assert (tracked.status, tracked.plays) == (Status.QUEUED, 0)
        assert not call.conductor.tracking_audio
        assert call.audio(4800) == []
        assert sent(effects) == []  # the VAD response still plays

        call.transcript("resp_vad", "Let me look that up.")
        done = call.done("resp_vad")
        assert finals(done) == []
        assert [e["event_id"] for e in creates(done)] == ["d1.2"]
        call.play("resp_1", tracked)
        assert state(tracked) is Status.COMPLETED
        assert (tracked.plays, tracked.response_id, tracked.transcript_verified) == (
            1,
            "resp_1",
            True,
        )

    def test_a_wrong_match_leaves_no_trace_in_the_record(self) -> None:
        call = Call(echo=False)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_vad", item_id="item_vad")
        call.audio(4800)  # VAD audio, counted before the error arrived
        call.error("d1.1", COLLISION)
        assert tracked.response_id is None
        assert tracked.item_id is None
        assert tracked.started_at is None
        assert tracked.first_audio_at is None

        call.done("resp_vad")
        call.tick(3.0)
        started = call.now
        call.play("resp_1", tracked)
        assert tracked.started_at == started
        assert tracked.first_audio_at == started

    def test_collisions_give_up_after_the_limit(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        for attempt in range(1, MAX_COLLISIONS + 1):
            assert actions(call.error(f"d1.{attempt}", COLLISION)) == ["delivery.collided"]
            assert [e["event_id"] for e in creates(call.pump())] == [f"d1.{attempt + 1}"]
        effects = call.error(f"d1.{MAX_COLLISIONS + 1}", COLLISION)
        [final] = finals(effects)
        assert (final.action, tracked.status) == ("delivery.failed", Status.FAILED)
        assert COLLISION in (tracked.failure_reason or "")
        assert len(tracked.attempts) == MAX_COLLISIONS + 1

    def test_another_refusal_fails_the_delivery_and_the_next_one_goes(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.submit(delivery("d2"))
        effects = call.error("d1.1", "invalid_value", "pre_generated_assistant_message too long")
        assert state(tracked) is Status.FAILED
        assert "invalid_value" in (tracked.failure_reason or "")
        assert [r.action for r in finals(effects)] == ["delivery.failed"]
        assert created_for(effects) == ["d2"]

    def test_an_error_about_someone_elses_event_changes_nothing(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        assert call.error("agent_evt_9", "invalid_value") == []
        assert call.error(None, "invalid_value") == []
        assert state(tracked) is Status.SENT
        assert call.conductor.inflight is tracked

    def test_a_collision_naming_no_event_is_ours_when_no_agent_request_waits(self) -> None:
        # error.event_id is optional in Voice Live; every agent request is seen on its way up,
        # so with none pending the refused request can only be ours: retried, never failed.
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        effects = call.error(None, COLLISION)
        assert [r.action for r in records(effects)] == ["delivery.collided"]
        assert state(tracked) is Status.QUEUED
        assert not any(r.final for r in records(effects))

    @BOTH
    def test_a_refused_agent_request_does_not_block_the_queue(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.vad_response("resp_vad")
        call.client({"type": "response.create", "event_id": "agent_1"})
        call.error("agent_1", COLLISION)  # the agent's request will never get a response
        tracked = delivery("d1")
        call.submit(tracked)
        assert created_for(call.done("resp_vad")) == ["d1"]

    @BOTH
    def test_an_agent_request_never_answered_stops_holding_the_queue_in_time(
        self, echo: bool
    ) -> None:
        call = Call(echo=echo, answer_timeout=5.0)
        call.learn_echo()
        effects = call.client({"type": "response.create"})  # no event_id: an error can't name it
        assert RetryLater(5.0) in effects
        tracked = delivery("d1")
        assert sent(call.submit(tracked)) == []
        call.tick(4.9)
        assert sent(call.pump()) == []
        call.tick(0.1)  # when the engine's RetryLater fires
        assert created_for(call.pump()) == ["d1"]

    def test_with_echo_a_response_without_metadata_answers_the_agents_request(self) -> None:
        call = Call(echo=True)
        call.learn_echo()
        call.client({"type": "response.create", "event_id": "agent_1"})
        tracked = delivery("d1")
        call.submit(tracked)
        assert actions(call.created("resp_agent")) == []
        assert created_for(call.done("resp_agent")) == ["d1"]

    @BOTH
    def test_an_interrupt_that_collides_cancels_the_response_in_its_way(self, echo: bool) -> None:
        call = Call(echo=echo)
        call.learn_echo()  # with echo, the VAD response is then not taken for ours
        call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        call.vad_response("resp_vad")  # raced ours
        effects = call.error("urgent.1", COLLISION)
        assert cancels(effects) == [{"type": "response.cancel", "response_id": "resp_vad"}]


# --- barge-in ------------------------------------------------------------------------------------


class TestBargeIn:
    @BOTH
    def test_barge_in_replays_a_non_interruptible_delivery(self, echo: bool) -> None:
        call = Call(echo=echo)
        legal = delivery("legal", interruptible=False, max_plays=2)
        call.submit(legal)
        call.start("resp_1", "legal")
        call.audio(PCM16_BYTES_PER_SECOND)
        call.tick(0.6)
        call.speech_started()
        effects = call.barge_in_done("resp_1")

        assert actions(effects, "legal") == ["delivery.interrupted", "delivery.replay_queued"]
        assert not any(r.final for r in records(effects))
        assert state(legal) is Status.QUEUED
        assert legal.plays == 1
        assert sent(effects) == []  # not while the caller still speaks
        assert legal.current is not None
        assert legal.current.outcome == "interrupted"
        assert "turn_detected" in (legal.current.reason or "")

        assert [e["event_id"] for e in creates(call.speech_stopped())] == ["legal.2"]
        call.play("resp_2", legal)
        assert (legal.status, legal.plays) == (Status.COMPLETED, 2)

    def test_barge_in_stops_replaying_after_max_plays(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False, max_plays=2)
        call.submit(legal)
        for n in (1, 2):
            call.start(f"resp_{n}", "legal")
            call.speech_started()
            last = call.barge_in_done(f"resp_{n}")
            call.speech_stopped()
        [final] = finals(last)
        assert final.action == "delivery.interrupted"
        assert (legal.status, legal.plays, len(legal.attempts)) == (Status.INTERRUPTED, 2, 2)
        assert legal not in call.conductor.queue

    def test_max_plays_of_one_never_replays(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False, max_plays=1)
        call.submit(legal)
        call.start("resp_1", "legal")
        effects = call.barge_in_done("resp_1")
        assert [r.action for r in finals(effects)] == ["delivery.interrupted"]
        assert state(legal) is Status.INTERRUPTED

    def test_barge_in_ends_an_interruptible_delivery_with_what_was_heard(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", interruptible=True)
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.audio(PCM16_BYTES_PER_SECOND * 3)  # 3 s sent at once, faster than real time
        call.tick(0.8)  # the caller spoke after 0.8 s of playback
        call.speech_started()
        effects = call.barge_in_done("resp_1")
        [final] = finals(effects)
        assert (final.action, final.fields["played_ms"]) == ("delivery.interrupted", 800)
        assert (tracked.status, tracked.played_ms) == (Status.INTERRUPTED, 800)
        assert tracked.failure_reason is None
        assert tracked.transcript_verified is None

    def test_a_replay_goes_before_an_interrupt_that_waited_for_it(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False)
        call.submit(legal)
        call.start("resp_1", "legal")
        call.submit(delivery("urgent", priority=Priority.INTERRUPT))
        assert created_for(call.barge_in_done("resp_1")) == ["legal"]


# --- truncation ----------------------------------------------------------------------------------


class TestTruncation:
    def test_service_truncation_after_a_barge_in_sets_what_was_heard(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND * 2)
        call.tick(2.0)
        call.barge_in_done("resp_1")
        effects = call.truncated("item_1", 1240)
        assert actions(effects) == ["delivery.truncated"]
        assert tracked.played_ms == 1240
        assert tracked.current is not None
        assert tracked.current.played_ms == 1240
        assert state(tracked) is Status.INTERRUPTED

    def test_the_agent_stopping_playback_ends_it_interrupted_at_that_point(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND * 2)
        call.tick(0.5)
        truncate = {"type": "conversation.item.truncate", "item_id": "item_1"}
        assert call.client(truncate | {"content_index": 0, "audio_end_ms": 450}) == []
        call.tick(1.5)
        call.transcript("resp_1", tracked.text or "")
        effects = call.done("resp_1")  # the service finished sending; the listener did not hear
        assert [r.action for r in finals(effects)] == ["delivery.interrupted"]
        assert (tracked.status, tracked.played_ms) == (Status.INTERRUPTED, 450)
        assert tracked.transcript_verified is None

    def test_the_agent_stopping_playback_after_completion_makes_it_interrupted(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", interruptible=True)
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND * 2)
        call.tick(0.3)
        call.transcript("resp_1", tracked.text or "")
        call.done("resp_1")
        assert (tracked.status, tracked.played_ms) == (Status.COMPLETED, 2000)
        effects = call.client(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": 700,
            }
        )
        [final] = finals(effects)
        assert final.action == "delivery.interrupted"
        assert (tracked.status, tracked.played_ms) == (Status.INTERRUPTED, 700)

    def test_a_non_interruptible_delivery_cut_after_completion_is_replayed_at_once(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False, max_plays=2)
        call.submit(legal)
        call.play("resp_1", legal, seconds=2.0)
        assert state(legal) is Status.COMPLETED
        truncate = {"type": "conversation.item.truncate", "item_id": "item_resp_1"}
        effects = call.client(truncate | {"content_index": 0, "audio_end_ms": 900})
        assert "delivery.replay_queued" in actions(effects)
        assert created_for(effects) == ["legal"]  # nothing plays and nobody speaks

    def test_service_truncation_during_a_barge_in_is_not_blamed_on_the_agent(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND * 2)
        call.tick(0.6)
        call.speech_started()
        call.truncated("item_1", 610)  # auto_truncate, before response.done
        effects = call.barge_in_done("resp_1")
        [final] = finals(effects)
        assert tracked.played_ms == 610
        assert "agent" not in (final.fields.get("reason") or "")

    def test_truncation_of_an_item_that_is_not_ours_is_ignored(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1", "item_1")
        assert call.truncated("item_vad", 100) == []
        call.transcript("resp_1", tracked.text or "")
        call.done("resp_1")
        assert state(tracked) is Status.COMPLETED


# --- audio and how a response ends ---------------------------------------------------------------


class TestOutcome:
    def test_the_first_audio_marks_it_speaking_once(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.tick(0.1)
        first = call.audio(4800)
        assert actions(first) == ["delivery.speaking"]
        assert (tracked.status, tracked.first_audio_at) == (Status.SPEAKING, call.now)
        call.tick(0.1)
        assert call.audio(4800) == []
        assert tracked.audio_ms == pytest.approx(200.0)

    def test_audio_of_a_response_not_ours_is_not_tracked(self) -> None:
        call = Call(echo=True)
        call.vad_response("resp_vad")
        assert not call.conductor.tracking_audio
        assert call.audio(4800) == []

    def test_a_completed_delivery_records_what_was_played_and_the_verified_transcript(
        self,
    ) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        effects = call.play("resp_1", tracked, seconds=1.5)
        [final] = finals(effects)
        assert final.action == "delivery.completed"
        assert final.fields["status"] == "completed"
        assert final.fields["played_ms"] == 1500
        assert final.fields["transcript_verified"] is True
        assert final.attempt is not None
        assert final.attempt["outcome"] == "completed"
        assert tracked.failure_reason is None
        assert tracked.ended_at == call.now
        assert not call.conductor.tracking_audio

    def test_a_transcript_that_differs_from_the_text_is_not_verified(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", "Calls are recorded.")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.transcript("resp_1", "Calls are not recorded.")
        call.done("resp_1")
        assert (tracked.status, tracked.transcript_verified) == (Status.COMPLETED, False)
        assert tracked.transcript == "Calls are not recorded."

    def test_an_instruction_delivery_has_no_transcript_to_verify(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", None, instructions="Mention the recording.")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.transcript("resp_1", "This call is recorded.")
        call.done("resp_1")
        assert (tracked.status, tracked.transcript_verified) == (Status.COMPLETED, None)

    @pytest.mark.parametrize(
        ("fmt", "nbytes"),
        [
            ("pcm16", 48_000),
            ("pcm16_16000hz", 32_000),
            ("pcm16_8000hz", 16_000),
            ("g711_ulaw", 8000),
        ],
    )
    def test_the_output_format_decides_how_long_the_audio_is(self, fmt: str, nbytes: int) -> None:
        call = Call(echo=True)
        call.server({"type": "session.updated", "session": {"output_audio_format": fmt}})
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.audio(nbytes)
        call.tick(1.0)
        call.transcript("resp_1", tracked.text or "")
        call.done("resp_1")
        assert tracked.played_ms == 1000

    def test_a_failed_response_fails_the_delivery_with_its_error(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1")
        details = {"type": "failed", "error": {"type": "server_error", "code": "tts_unavailable"}}
        effects = call.done("resp_1", "failed", details)
        [final] = finals(effects)
        assert (final.action, tracked.status) == ("delivery.failed", Status.FAILED)
        assert "tts_unavailable" in (tracked.failure_reason or "")

    def test_an_incomplete_response_fails_with_its_reason(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1", None, instructions="Explain the policy.")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.done("resp_1", "incomplete", {"type": "incomplete", "reason": "content_filter"})
        assert state(tracked) is Status.FAILED
        assert "content_filter" in (tracked.failure_reason or "")


# --- answer timeouts -----------------------------------------------------------------------------


class TestAnswerTimeout:
    def test_an_unanswered_request_fails_and_the_next_one_goes(self) -> None:
        call = Call(echo=True, answer_timeout=4.0)
        tracked = delivery("d1")
        [timer] = [e for e in call.submit(tracked) if isinstance(e, AnswerTimer)]
        call.submit(delivery("d2"))
        call.tick(4.0)
        effects = call.timeout(timer)
        assert [r.action for r in finals(effects)] == ["delivery.failed"]
        assert state(tracked) is Status.FAILED
        assert "4 s" in (tracked.failure_reason or "")
        assert created_for(effects) == ["d2"]

    def test_the_timer_of_an_answered_request_does_nothing(self) -> None:
        call = Call(echo=False)
        tracked = delivery("d1")
        [timer] = [e for e in call.submit(tracked) if isinstance(e, AnswerTimer)]
        call.created("resp_1", "d1")
        assert call.timeout(timer) == []
        assert state(tracked) is Status.STARTED

    def test_the_timer_of_an_earlier_attempt_does_nothing(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        [timer] = [e for e in call.submit(tracked) if isinstance(e, AnswerTimer)]
        call.error("d1.1", COLLISION)
        call.pump()
        assert call.timeout(timer) == []
        assert state(tracked) is Status.SENT
        assert call.conductor.inflight is tracked

    def test_a_late_answer_after_the_timeout_is_not_taken_for_ours(self) -> None:
        call = Call(echo=False)
        tracked = delivery("d1")
        [timer] = [e for e in call.submit(tracked) if isinstance(e, AnswerTimer)]
        call.timeout(timer)
        assert actions(call.created("resp_late")) == []
        assert state(tracked) is Status.FAILED


# --- an upstream that falls silent in the middle of a response ----------------------------------


def silence_timer(effects: list[Effect]) -> SilenceTimer:
    [timer] = [e for e in effects if isinstance(e, SilenceTimer)]
    return timer


class TestSilence:
    @BOTH
    def test_a_response_unheard_for_the_answer_timeout_fails_and_the_next_one_goes(
        self, echo: bool
    ) -> None:
        call = Call(echo=echo, answer_timeout=4.0)
        playing, waiting = delivery("d1"), delivery("d2")
        call.submit(playing)
        call.submit(waiting)
        timer = silence_timer(call.created("resp_1", "d1"))
        assert timer == SilenceTimer("d1", "resp_1", 4.0)
        call.item("resp_1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND)
        call.tick(4.0)
        effects = call.silence(timer)
        assert state(playing) is Status.FAILED
        assert playing.failure_reason == "the upstream fell silent for 4.0 s while speaking it"
        assert [r.action for r in finals(effects)] == ["delivery.failed"]
        # The stalled response is cancelled before the next request goes out.
        assert [e["type"] for e in sent(effects)] == ["response.cancel", "response.create"]
        assert cancels(effects) == [{"type": "response.cancel", "response_id": "resp_1"}]
        assert created_for(effects) == ["d2"]
        assert state(waiting) is Status.SENT

    def test_a_response_that_never_played_says_so(self) -> None:
        call = Call(echo=True, answer_timeout=2.0)
        tracked = delivery("d1")
        call.submit(tracked)
        timer = silence_timer(call.created("resp_1", "d1"))
        call.tick(2.5)
        call.silence(timer)
        assert tracked.failure_reason == "the upstream fell silent for 2.5 s after starting it"

    def test_audio_and_events_keep_it_alive_and_the_timer_waits_for_what_is_left(self) -> None:
        call = Call(echo=True, answer_timeout=4.0)
        tracked = delivery("d1")
        call.submit(tracked)
        timer = silence_timer(call.created("resp_1", "d1"))
        call.tick(3.0)
        call.audio(PCM16_BYTES_PER_SECOND)
        call.tick(1.0)
        assert call.silence(timer) == [SilenceTimer("d1", "resp_1", 3.0)]
        call.tick(2.0)
        call.transcript("resp_1", tracked.text or "")  # an event of it, no audio
        call.tick(1.0)
        assert call.silence(timer) == [SilenceTimer("d1", "resp_1", 3.0)]
        assert state(tracked) is Status.SPEAKING
        call.tick(1.0)
        assert actions(call.done("resp_1")) == ["delivery.completed"]

    def test_a_response_that_ended_meanwhile_is_left_alone(self) -> None:
        call = Call(echo=True, answer_timeout=1.0)
        tracked = delivery("d1")
        call.submit(tracked)
        timer = silence_timer(call.created("resp_1", "d1"))
        call.item("resp_1", "item_resp_1")
        call.transcript("resp_1", tracked.text or "")
        call.done("resp_1")
        call.tick(60.0)
        assert call.silence(timer) == []
        assert state(tracked) is Status.COMPLETED

    def test_the_timer_of_an_earlier_play_leaves_the_replay_alone(self) -> None:
        call = Call(echo=True, answer_timeout=1.0)
        legal = delivery("legal", interruptible=False)
        call.submit(legal)
        first = silence_timer(call.created("resp_1", "legal"))
        call.barge_in_done("resp_1")
        replay = silence_timer(call.created("resp_2", "legal"))
        call.tick(1.0)
        assert call.silence(first) == []
        assert state(legal) is Status.STARTED
        assert replay == SilenceTimer("legal", "resp_2", 1.0)

    def test_a_response_not_ours_arms_nothing(self) -> None:
        call = Call(echo=True)
        assert call.vad_response("resp_vad") == []

    @BOTH
    def test_the_late_end_of_the_silenced_response_records_nothing_twice(self, echo: bool) -> None:
        call = Call(echo=echo, answer_timeout=1.0)
        playing, waiting = delivery("d1"), delivery("d2")
        call.submit(playing)
        call.submit(waiting)
        timer = silence_timer(call.created("resp_1", "d1"))
        call.item("resp_1", "item_1")
        call.audio(PCM16_BYTES_PER_SECOND)
        call.tick(1.5)
        call.silence(timer)
        # The upstream was only slow: the rest of the silenced response arrives after all.
        late = call.audio(PCM16_BYTES_PER_SECOND)
        late += call.truncated("item_1", 700)
        late += call.done(
            "resp_1", "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        )
        assert late == []
        assert state(playing) is Status.FAILED
        assert [a.outcome for a in playing.attempts] == ["failed"]
        assert call.conductor.inflight is waiting
        # ... and the next delivery is followed as usual.
        call.start("resp_2", "d2")
        call.transcript("resp_2", waiting.text or "")
        assert actions(call.done("resp_2"), "d2") == ["delivery.completed"]
        assert state(playing) is Status.FAILED

    def test_silence_while_the_session_is_away_is_not_the_upstreams(self) -> None:
        call = Call(echo=True, answer_timeout=2.0)
        tracked = delivery("d1")
        call.submit(tracked)
        timer = silence_timer(call.created("resp_1", "d1"))
        call.conductor.paused = True  # the attached agent's control channel dropped
        call.tick(10.0)
        assert call.silence(timer) == [SilenceTimer("d1", "resp_1", 2.0)]
        call.resume()  # it counts again from here
        call.tick(1.5)
        assert call.silence(timer) == [SilenceTimer("d1", "resp_1", 0.5)]
        assert state(tracked) is Status.STARTED
        call.tick(0.5)
        assert actions(call.silence(timer)) == ["delivery.failed"]

    def test_a_response_already_being_cancelled_is_not_cancelled_again(self) -> None:
        call = Call(echo=True, answer_timeout=1.0)
        playing = delivery("d1")
        call.submit(playing)
        timer = silence_timer(call.created("resp_1", "d1"))
        assert len(cancels(call.submit(delivery("urgent", priority=Priority.INTERRUPT)))) == 1
        call.tick(1.0)
        effects = call.silence(timer)  # the cancel was never answered either
        assert cancels(effects) == []
        assert created_for(effects) == ["urgent"]
        assert state(playing) is Status.FAILED


# --- the end of the session ----------------------------------------------------------------------


class TestClose:
    def test_close_expires_what_waits_and_fails_what_is_on_its_way(self) -> None:
        call = Call(echo=True)
        playing, waiting = delivery("d1"), delivery("d2")
        call.submit(playing)
        call.submit(waiting)
        call.start("resp_1", "d1")
        effects = call.close("the agent hung up")
        assert {(r.delivery_id, r.action) for r in finals(effects)} == {
            ("d1", "delivery.failed"),
            ("d2", "delivery.expired"),
        }
        assert (playing.status, waiting.status) == (Status.FAILED, Status.EXPIRED)
        assert "the agent hung up" in (playing.failure_reason or "")
        assert "the agent hung up" in (waiting.failure_reason or "")
        assert not call.conductor.queue
        assert not call.conductor.tracking_audio

    def test_close_before_session_created_expires_the_queue(self) -> None:
        call = Call(echo=True, ready=False)
        tracked = delivery("d1")
        call.submit(tracked)
        assert [r.action for r in finals(call.close())] == ["delivery.expired"]
        assert state(tracked) is Status.EXPIRED

    def test_close_during_the_greeting_hold_expires_what_waited(self) -> None:
        call = Call(echo=True)
        call.conductor.held = True
        tracked = delivery("d1")
        call.submit(tracked)
        assert [r.action for r in finals(call.close())] == ["delivery.expired"]

    def test_close_while_sent_fails_it_once(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        effects = call.close()
        assert [(r.delivery_id, r.action) for r in finals(effects)] == [("d1", "delivery.failed")]
        assert tracked.current is not None
        assert tracked.current.outcome == "failed"

    @BOTH
    def test_close_while_speaking_fails_it_once(self, echo: bool) -> None:
        call = Call(echo=echo)
        tracked = delivery("d1")
        call.submit(tracked)
        call.start("resp_1", "d1")
        call.audio(4800)
        assert state(tracked) is Status.SPEAKING
        effects = call.close()
        assert [(r.delivery_id, r.action) for r in finals(effects)] == [("d1", "delivery.failed")]

    def test_close_while_a_replay_waits_expires_it(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False)
        call.submit(legal)
        call.start("resp_1", "legal")
        call.speech_started()
        call.barge_in_done("resp_1")
        assert state(legal) is Status.QUEUED
        assert [r.action for r in finals(call.close())] == ["delivery.expired"]
        assert state(legal) is Status.EXPIRED

    def test_close_after_completion_leaves_it_completed(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        call.submit(tracked)
        call.play("resp_1", tracked)
        assert call.close() == []
        assert state(tracked) is Status.COMPLETED

    def test_a_cut_reported_after_close_does_not_queue_a_replay(self) -> None:
        call = Call(echo=True)
        legal = delivery("legal", interruptible=False, max_plays=3)
        call.submit(legal)
        call.play("resp_1", legal)
        call.close()
        truncate = {"type": "conversation.item.truncate", "item_id": "item_resp_1"}
        effects = call.client(truncate | {"content_index": 0, "audio_end_ms": 300})
        assert [r.action for r in finals(effects)] == ["delivery.interrupted"]
        assert (legal.status, legal.played_ms) == (Status.INTERRUPTED, 300)
        assert legal not in call.conductor.queue

    def test_nothing_is_sent_or_revived_after_close(self) -> None:
        call = Call(echo=True)
        tracked = delivery("d1")
        [timer] = [e for e in call.submit(tracked) if isinstance(e, AnswerTimer)]
        call.start("resp_1", "d1")
        call.close()
        late = delivery("d2")
        effects = call.submit(late)
        assert [r.action for r in finals(effects)] == ["delivery.expired"]
        assert state(late) is Status.EXPIRED
        assert call.barge_in_done("resp_1") == []
        assert call.speech_stopped() == []
        assert call.server({"type": "session.created", "session": {}}) == []
        assert call.timeout(timer) == []
        assert call.close() == []
        assert state(tracked) is Status.FAILED


# --- a session that cannot be reached for a while (an attached agent's control channel) ---------


class TestPaused:
    def test_deliveries_wait_while_paused_and_go_in_order_on_resume(self) -> None:
        call = Call(echo=True)
        call.conductor.paused = True
        first, second = delivery("d1"), delivery("d2")
        assert sent(call.submit(first)) == []
        assert sent(call.submit(second)) == []
        assert (state(first), state(second)) == (Status.QUEUED, Status.QUEUED)
        assert created_for(call.resume()) == ["d1"]
        call.start("resp_1", "d1")
        call.transcript("resp_1", first.text or "")
        assert created_for(call.done("resp_1")) == ["d2"]

    def test_if_idle_is_skipped_while_paused(self) -> None:
        call = Call(echo=True)
        call.conductor.paused = True
        tracked = delivery("d1", priority=Priority.IF_IDLE)
        assert [r.action for r in finals(call.submit(tracked))] == ["delivery.skipped"]
        assert state(tracked) is Status.SKIPPED

    def test_an_interrupt_requested_while_paused_cancels_only_on_resume(self) -> None:
        call = Call(echo=True)
        call.vad_response("resp_vad")
        call.conductor.paused = True
        urgent = delivery("d1", priority=Priority.INTERRUPT)
        assert sent(call.submit(urgent)) == []  # a cancel now could reach the wrong response
        resumed = call.resume()
        assert cancels(resumed) == [{"type": "response.cancel", "response_id": "resp_vad"}]
        assert created_for(call.done("resp_vad", status="cancelled")) == ["d1"]

    def test_closing_while_paused_expires_what_waited(self) -> None:
        call = Call(echo=True)
        call.conductor.paused = True
        tracked = delivery("d1")
        call.submit(tracked)
        ended = finals(call.close("the control channel never came back"))
        assert [r.action for r in ended] == ["delivery.expired"]
        assert state(tracked) is Status.EXPIRED
