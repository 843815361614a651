"""The delivery rules of one live session, with no I/O: when each delivery's ``response.create``
goes out, and what every server event means for it.

The engine (``engine.py``) feeds it the session's control events and the arrival of audio frames
and carries out what it returns: events to send upstream, records to persist, timers to start.
Keeping the rules pure makes every race of the protocol a plain unit test.

Correlation: each ``response.create`` carries ``metadata`` naming the delivery. When the upstream
echoes it (``response.created.response.metadata``) that decides; when it does not, responses are
matched to requests in the order the requests went out (ours and the agent's alike), and an
``error`` that names our ``event_id`` undoes a wrong match (a response server VAD started raced
ours).

Timing: a request unanswered within ``answer_timeout`` fails (``AnswerTimer``); so does a response
of ours once nothing has been heard of it (an event, or audio) for as long (``SilenceTimer``): an
upstream that stalls mid-phrase must not hold the queue for the rest of the session.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from datetime import datetime
from typing import Any

from service.deliveries.states import Priority, Status
from service.deliveries.tracking import (
    METADATA_KEY,
    AgentRequest,
    AnswerTimer,
    Attempt,
    Effect,
    Record,
    RetryLater,
    Send,
    SilenceTimer,
    Tracked,
    response_create,
)

COLLISION = "conversation_already_has_active_response"
MAX_COLLISIONS = 10
COLLISION_RETRY_SECONDS = 0.25
# Bytes of audio per millisecond for each Voice Live output format.
BYTES_PER_MS = {
    "pcm16": 48.0,
    "pcm16_24000hz": 48.0,
    "pcm16_16000hz": 32.0,
    "pcm16_8000hz": 16.0,
    "g711_ulaw": 8.0,
    "g711_alaw": 8.0,
}


def member(event: dict[str, Any], name: str) -> dict[str, Any]:
    """An event's object member, or an empty one: an upstream may send a known event with a
    member of another type (a string, a list), and a mistyped event must not end the session."""
    value = event.get(name)
    return value if isinstance(value, dict) else {}


class Conductor:
    """One session's delivery queue and its view of the conversation."""

    def __init__(self, *, answer_timeout: float) -> None:
        self.answer_timeout = answer_timeout
        self.queue: list[Tracked] = []
        self.inflight: Tracked | None = None  # sent, not yet answered by response.created
        self.active: str | None = None  # the response in progress, ours or not
        self.active_owner: Tracked | None = None
        self.cancel_requested_for: str | None = None
        self.cancel_reason: str | None = None
        # Monotonic seconds when the upstream was last heard about our active response.
        self.heard_at: float | None = None
        # Requests whose response has not started yet, in the order they went upstream.
        self.expected: deque[Tracked | AgentRequest] = deque()
        self.user_speaking = False
        self.ready = False
        self.held = False  # the greeting is being prepared: it must go first
        # Nothing can reach the session now (an attached agent's control channel is down);
        # deliveries wait and go out once it is back.
        self.paused = False
        self.closed = False
        self.metadata_echoed = False
        self.by_item: dict[str, Tracked] = {}
        self.bytes_per_ms = BYTES_PER_MS["pcm16"]

    # --- questions ------------------------------------------------------------------------------

    @property
    def tracking_audio(self) -> bool:
        """Whether audio frames matter right now (one of ours is playing)."""
        return self.active_owner is not None

    def busy(self) -> bool:
        """Not idle: something plays, waits, or is about to (a greeting, a session not ready)."""
        return bool(
            self.inflight
            or self.active
            or self.queue
            or self.user_speaking
            or self.expected
            or self.held
            or self.paused
            or not self.ready
        )

    def _why_busy(self) -> str:
        if self.inflight or self.active or self.expected:
            return "a response was playing or about to"
        if self.queue:
            return "deliveries were waiting"
        if self.user_speaking:
            return "the caller was speaking"
        if self.held:
            return "its greeting was going out"
        if self.paused:
            return "the agent's control channel was down"
        return "the session was not ready yet"

    # --- requests -------------------------------------------------------------------------------

    def submit(self, tracked: Tracked, now: datetime) -> list[Effect]:
        if self.closed:
            return self._end(tracked, Status.EXPIRED, now, "the session ended before it was sent")
        if tracked.priority is Priority.IF_IDLE and self.busy():
            return self._end(
                tracked, Status.SKIPPED, now, f"the session was not idle ({self._why_busy()})"
            )
        if tracked.greeting:
            self.queue.insert(0, tracked)
        elif tracked.priority is Priority.INTERRUPT:
            ahead = sum(1 for t in self.queue if t.greeting or t.priority is Priority.INTERRUPT)
            self.queue.insert(ahead, tracked)
        else:
            self.queue.append(tracked)
        return self._cancel_for_interrupt() + self.pump(now)

    def pump(self, now: datetime) -> list[Effect]:
        """Send the next delivery if nothing is in the way."""
        if not self.ready or self.held or self.paused or self.closed:
            return []
        if self.inflight or self.active or not self.queue:
            return []
        self._forget_stale_agent_requests(now)
        if self.expected:  # a response the agent asked for is about to start
            return []
        head = self.queue[0]
        if self.user_speaking and head.priority is not Priority.INTERRUPT:
            return []
        self.queue.pop(0)
        return self._send(head, now)

    def resume(self, now: datetime, mono: float) -> list[Effect]:
        """The session can be reached again: what waited goes out (an interrupt cuts first).
        Our response's silence counts afresh: while the session was away nothing could be heard."""
        self.paused = False
        if self.active_owner is not None:
            self.heard_at = mono
        return self._cancel_for_interrupt() + self.pump(now)

    def _send(self, tracked: Tracked, now: datetime) -> list[Effect]:
        number = len(tracked.attempts) + 1
        attempt = Attempt(number, f"{tracked.id}.{number}", now)
        tracked.attempts.append(attempt)
        tracked.status = Status.SENT
        tracked.sent_at = tracked.sent_at or now
        tracked.audio_ms, tracked.audio_began = 0.0, None
        tracked.truncated_ms = tracked.truncated_why = None
        self.inflight = tracked
        self.expected.append(tracked)
        return [
            Send(response_create(tracked, attempt), tracked.id),
            self._record(tracked, "delivery.sent"),
            AnswerTimer(tracked.id, attempt.event_id),
        ]

    def _cancel_for_interrupt(self) -> list[Effect]:
        """An ``interrupt`` delivery at the head cuts what is playing, unless that is one of our
        non-interruptible deliveries (it then goes right after it)."""
        if not self.queue or self.queue[0].priority is not Priority.INTERRUPT or self.paused:
            return []
        if self.active is None or self.cancel_requested_for == self.active:
            return []
        owner = self.active_owner
        if owner is not None and not owner.interruptible:
            return []
        self.cancel_requested_for = self.active
        self.cancel_reason = f"cancelled for the interrupt delivery {self.queue[0].id}"
        return [Send({"type": "response.cancel", "response_id": self.active})]

    # --- events from the agent ------------------------------------------------------------------

    def on_client_event(
        self, event: dict[str, Any], now: datetime, ahead_of: frozenset[str] = frozenset()
    ) -> list[Effect]:
        """``ahead_of``: deliveries whose request the service has handed on but that reached the
        upstream after this event (an attached agent's connector sends them in its own time)."""
        kind = event.get("type")
        if kind == "response.create":
            event_id = event.get("event_id")
            request = AgentRequest(event_id if isinstance(event_id, str) else None, now)
            later = [
                i
                for i, r in enumerate(self.expected)
                if isinstance(r, Tracked) and r.id in ahead_of
            ]
            if later:
                self.expected.insert(later[0], request)
            else:
                self.expected.append(request)
            # Should its response never come (refused, lost), stop waiting for it in time.
            return [RetryLater(self.answer_timeout)]
        if kind == "conversation.item.truncate":
            end = event.get("audio_end_ms")
            item = event.get("item_id")
            if isinstance(item, str) and isinstance(end, int):
                return self._truncated(item, end, now, "the agent stopped playback")
        return []

    # --- events from the upstream ---------------------------------------------------------------

    def on_server_event(self, event: dict[str, Any], now: datetime, mono: float) -> list[Effect]:
        if self.active_owner is not None:  # only one response is active: this is about it
            self.heard_at = mono
        kind = event.get("type")
        if kind == "session.created":
            self.ready = True
            return self.pump(now)
        if kind == "session.updated":
            fmt = member(event, "session").get("output_audio_format")
            if isinstance(fmt, str):
                self.bytes_per_ms = BYTES_PER_MS.get(fmt, self.bytes_per_ms)
            return []
        if kind == "response.created":
            return self._response_created(member(event, "response"), now, mono)
        if kind == "response.output_item.added":
            owner = self._owner_of(event.get("response_id"))
            item = member(event, "item").get("id")
            if owner is not None and isinstance(item, str) and owner.current is not None:
                owner.item_id = owner.current.item_id = item
                self.by_item[item] = owner
            return []
        if kind == "response.audio_transcript.done":
            owner = self._owner_of(event.get("response_id"))
            if owner is not None:
                transcript = event.get("transcript")
                owner.transcript = transcript if isinstance(transcript, str) else None
            return []
        if kind == "response.done":
            return self._response_done(member(event, "response"), now, mono)
        if kind == "conversation.item.truncated":
            item, end = event.get("item_id"), event.get("audio_end_ms")
            if isinstance(item, str) and isinstance(end, int):
                return self._truncated(item, end, now, "truncated by the service")
            return []
        if kind == "input_audio_buffer.speech_started":
            self.user_speaking = True
            return []
        if kind == "input_audio_buffer.speech_stopped":
            self.user_speaking = False
            return self.pump(now)
        if kind == "error":
            return self._error(member(event, "error"), now)
        return []

    def on_audio(self, audio_bytes: int, now: datetime, mono: float) -> list[Effect]:
        owner = self.active_owner
        if owner is None:
            return []
        self.heard_at = mono
        owner.audio_ms += audio_bytes / self.bytes_per_ms
        if owner.audio_began is not None:
            return []
        owner.audio_began = mono
        owner.status = Status.SPEAKING
        owner.first_audio_at = owner.first_audio_at or now
        if owner.current is not None:
            owner.current.first_audio_at = now
        return [self._record(owner, "delivery.speaking")]

    def on_answer_timeout(self, delivery_id: str, event_id: str, now: datetime) -> list[Effect]:
        tracked = self.inflight
        if tracked is None or tracked.id != delivery_id or tracked.status is not Status.SENT:
            return []
        if tracked.current is None or tracked.current.event_id != event_id:
            return []
        self._forget_request(tracked)
        reason = f"no answer from the upstream within {self.answer_timeout:g} s"
        return self._fail(tracked, now, reason) + self.pump(now)

    def on_silence(
        self, delivery_id: str, response_id: str, now: datetime, mono: float
    ) -> list[Effect]:
        """A ``SilenceTimer`` is due: if our response is still active and nothing was heard of
        it for ``answer_timeout``, it failed; cancel it (a live upstream stops, and the next
        request does not collide with it) and let the queue go on. Its ``response.done``, should
        it come after all, is then about a response no longer active and changes nothing."""
        owner = self.active_owner
        if owner is None or owner.id != delivery_id or self.active != response_id:
            return []  # it ended meanwhile
        if self.paused or self.heard_at is None:
            # The session cannot be reached: its silence is not the upstream's (resume starts
            # counting again).
            return [SilenceTimer(delivery_id, response_id, self.answer_timeout)]
        quiet = mono - self.heard_at
        if quiet < self.answer_timeout:
            return [SilenceTimer(delivery_id, response_id, self.answer_timeout - quiet)]
        effects: list[Effect] = []
        if self.cancel_requested_for != response_id:
            effects.append(Send({"type": "response.cancel", "response_id": response_id}))
        self.active = self.active_owner = self.cancel_requested_for = self.cancel_reason = None
        self.heard_at = None
        doing = "while speaking it" if owner.audio_began is not None else "after starting it"
        reason = f"the upstream fell silent for {quiet:.1f} s {doing}"
        return effects + self._fail(owner, now, reason) + self.pump(now)

    def close(self, now: datetime, reason: str) -> list[Effect]:
        """The session ended: what was on the way failed, what waited expired."""
        self.closed = True
        effects: list[Effect] = []
        for tracked in {id(t): t for t in (self.inflight, self.active_owner) if t}.values():
            effects += self._fail(tracked, now, f"the session ended before it finished: {reason}")
        for tracked in self.queue:
            effects += self._end(tracked, Status.EXPIRED, now, f"the session ended first: {reason}")
        self.queue.clear()
        self.inflight = self.active_owner = None
        return effects

    # --- the rules behind the events ------------------------------------------------------------

    def _response_created(
        self, response: dict[str, Any], now: datetime, mono: float
    ) -> list[Effect]:
        rid = response.get("id")
        if not isinstance(rid, str):
            return []
        self.active, self.active_owner, self.heard_at = rid, None, None
        owner = self._attribute(response.get("metadata"))
        effects: list[Effect] = []
        if owner is not None:
            if self.inflight is owner:
                self.inflight = None
            attempt = owner.current
            assert attempt is not None
            owner.response_id = attempt.response_id = rid
            owner.started_at = owner.started_at or now
            attempt.started_at = now
            owner.status = Status.STARTED
            owner.plays += 1
            self.active_owner, self.heard_at = owner, mono
            effects.append(self._record(owner, "delivery.started"))
            effects.append(SilenceTimer(owner.id, rid, self.answer_timeout))
        return effects + self._cancel_for_interrupt()

    def _attribute(self, metadata: Any) -> Tracked | None:
        """Whose response this is: by the echoed metadata, else by the order of requests."""
        named = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
        if isinstance(named, str):
            self.metadata_echoed = True
            for entry in self.expected:
                if isinstance(entry, Tracked) and entry.id == named:
                    self.expected.remove(entry)
                    return entry
            return None
        if self.metadata_echoed:
            # Ours would have carried its metadata: the agent's (oldest first), or server VAD's.
            agent = next((e for e in self.expected if isinstance(e, AgentRequest)), None)
            if agent is not None:
                self.expected.remove(agent)
            return None
        if not self.expected:
            return None  # server VAD started it
        entry = self.expected.popleft()
        return entry if isinstance(entry, Tracked) else None

    def _owner_of(self, response_id: Any) -> Tracked | None:
        owner = self.active_owner
        return owner if owner is not None and owner.response_id == response_id else None

    def _response_done(self, response: dict[str, Any], now: datetime, mono: float) -> list[Effect]:
        rid = response.get("id")
        if rid != self.active:
            return []
        owner = self.active_owner
        cancel_reason = self.cancel_reason if self.cancel_requested_for == rid else None
        self.active = self.active_owner = self.cancel_requested_for = self.cancel_reason = None
        self.heard_at = None
        effects: list[Effect] = []
        if owner is not None:
            effects = self._outcome(owner, response, now, mono, cancel_reason)
        return effects + self.pump(now)

    def _outcome(
        self,
        owner: Tracked,
        response: dict[str, Any],
        now: datetime,
        mono: float,
        cancel_reason: str | None,
    ) -> list[Effect]:
        status = response.get("status")
        details = member(response, "status_details")
        heard = round(owner.audio_ms)
        if owner.audio_began is not None:  # real-time playback: no more than the time elapsed
            heard = min(heard, round((mono - owner.audio_began) * 1000))
        if status == "completed" and owner.truncated_ms is None:
            owner.played_ms = round(owner.audio_ms)
            owner.transcript_verified = (
                owner.transcript == owner.text if owner.text is not None else None
            )
            return self._end(owner, Status.COMPLETED, now, None, outcome="completed")
        if status == "completed" or status == "cancelled":
            reason = details.get("reason")
            if owner.truncated_ms is not None:
                why, heard = owner.truncated_why or "truncated", owner.truncated_ms
                if reason == "turn_detected":
                    why = f"the caller spoke over it (turn_detected); {why}"
            elif reason == "turn_detected":
                why = "the caller spoke over it (turn_detected)"
            else:
                why = cancel_reason or f"cancelled ({reason or 'no reason given'})"
            return self._interrupted(owner, now, why, heard)
        error = member(details, "error")
        why = f"the response ended {status}" + (
            f": {details.get('reason') or error.get('code') or error.get('message')}"
            if details
            else ""
        )
        return self._fail(owner, now, why)

    def _interrupted(self, owner: Tracked, now: datetime, why: str, heard: int) -> list[Effect]:
        owner.played_ms = heard
        owner.transcript_verified = None
        replay = not owner.interruptible and owner.plays < owner.max_plays and not self.closed
        if not replay:
            return self._end(owner, Status.INTERRUPTED, now, why, outcome="interrupted", ms=heard)
        self._close_attempt(owner, now, "interrupted", why, heard)
        owner.status = Status.INTERRUPTED
        effects: list[Effect] = [self._record(owner, "delivery.interrupted", reason=why)]
        owner.status = Status.QUEUED
        self.queue.insert(0, owner)
        effects.append(self._record(owner, "delivery.replay_queued", reason=why))
        return effects

    def _truncated(self, item: str, end_ms: int, now: datetime, why: str) -> list[Effect]:
        owner = self.by_item.get(item)
        if owner is None or owner.current is None or owner.current.item_id != item:
            return []
        if owner is self.active_owner:  # still playing: decided when the response ends
            owner.truncated_ms, owner.truncated_why = end_ms, why
            return []
        if owner.status is Status.COMPLETED:  # the listener did not hear it all after all
            owner.status = Status.SPEAKING
            return self._interrupted(owner, now, why, end_ms) + self.pump(now)
        if owner.current.played_ms != end_ms and owner.current.outcome == "interrupted":
            owner.current.played_ms = end_ms
            if owner.status is Status.INTERRUPTED:
                owner.played_ms = end_ms
            return [self._record(owner, "delivery.truncated", reason=why)]
        return []

    def _error(self, error: dict[str, Any], now: datetime) -> list[Effect]:
        event_id = error.get("event_id")
        agent = next(
            (e for e in self.expected if isinstance(e, AgentRequest) and e.event_id == event_id),
            None,
        )
        if agent is not None and (event_id is not None or error.get("code") == COLLISION):
            # The agent's own request was refused (ours always carry an event_id, so a collision
            # naming none is the agent's).
            self.expected.remove(agent)
            return self.pump(now)
        candidates = (self.inflight, self.active_owner, *self.expected)
        tracked = next(
            (
                t
                for t in candidates
                if isinstance(t, Tracked)
                and t.current is not None
                and t.current.event_id == event_id
            ),
            None,
        )
        if tracked is None and event_id is None and error.get("code") == COLLISION:
            tracked = self.inflight  # the error names no request; ours is the one waiting
        if tracked is None:
            return []
        self._forget_request(tracked)
        if tracked is self.active_owner:  # we matched someone else's response to it: undo
            self.active_owner = None
            self._unmatch(tracked)
        code = error.get("code")
        if code == COLLISION and tracked.collisions < MAX_COLLISIONS:
            tracked.collisions += 1
            self._close_attempt(tracked, now, "collided", "a response was already in progress")
            tracked.status = Status.QUEUED
            self.queue.insert(0, tracked)
            effects: list[Effect] = [self._record(tracked, "delivery.collided")]
            if not self.active:
                return [*effects, RetryLater(COLLISION_RETRY_SECONDS)]
            return effects + self._cancel_for_interrupt()
        why = f"the upstream refused it: {code or 'error'}: {error.get('message') or ''}".strip()
        return self._fail(tracked, now, why) + self.pump(now)

    def _unmatch(self, tracked: Tracked) -> None:
        """Forget what a wrongly matched response wrote into the record: its ids and times."""
        tracked.plays -= 1
        attempt = tracked.current
        if attempt is not None:
            if attempt.item_id is not None:
                self.by_item.pop(attempt.item_id, None)
            attempt.response_id = attempt.item_id = None
            attempt.started_at = attempt.first_audio_at = None
        if tracked.plays == 0:
            tracked.response_id = tracked.item_id = None
            tracked.started_at = tracked.first_audio_at = None
        tracked.audio_ms, tracked.audio_began = 0.0, None
        tracked.truncated_ms = tracked.truncated_why = None

    def _forget_stale_agent_requests(self, now: datetime) -> None:
        """An agent request unanswered after the answer timeout was refused or lost (an error the
        agent's event had no id for): it must not hold the queue forever."""
        while self.expected:
            head = self.expected[0]
            if not isinstance(head, AgentRequest):
                return
            if (now - head.at).total_seconds() < self.answer_timeout:
                return
            self.expected.popleft()

    def _forget_request(self, tracked: Tracked) -> None:
        if self.inflight is tracked:
            self.inflight = None
        if tracked in self.expected:
            self.expected.remove(tracked)

    # --- endings --------------------------------------------------------------------------------

    def _fail(self, tracked: Tracked, now: datetime, why: str) -> list[Effect]:
        return self._end(tracked, Status.FAILED, now, why, outcome="failed")

    def _end(
        self,
        tracked: Tracked,
        status: Status,
        now: datetime,
        why: str | None,
        *,
        outcome: str | None = None,
        ms: int | None = None,
    ) -> list[Effect]:
        if outcome is not None:
            self._close_attempt(tracked, now, outcome, why, ms)
        tracked.status = status
        tracked.ended_at = now
        if status is not Status.COMPLETED:
            tracked.failure_reason = why if status is not Status.INTERRUPTED else None
        return [self._record(tracked, f"delivery.{status.value}", reason=why, final=True)]

    @staticmethod
    def _close_attempt(
        tracked: Tracked, now: datetime, outcome: str, why: str | None, ms: int | None = None
    ) -> None:
        attempt = tracked.current
        if attempt is None:
            return
        attempt.ended_at, attempt.outcome, attempt.reason = now, outcome, why
        attempt.played_ms = ms if ms is not None else round(tracked.audio_ms)

    @staticmethod
    def _record(
        tracked: Tracked, action: str, *, reason: str | None = None, final: bool = False
    ) -> Record:
        attempt = tracked.current
        return Record(
            tracked.id,
            action,
            tracked.snapshot() | ({"reason": reason} if reason else {}),
            dataclasses.asdict(attempt) if attempt else None,
            final,
        )
