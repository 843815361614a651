"""The delivery engine of one live session: the conductor's rules, carried out.

It owns the per-session queue (inside the conductor), sends through a ``Transport`` (the relay's
upstream socket or an attached agent's control channel), and persists every transition in order
through the database's recorder (``recorder.py``), so the record and the audit chain follow the
wire exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.deliveries.conductor import Conductor, member
from service.deliveries.recorder import (
    Entry,
    Job,
    Recorder,
    gate_for,
    recorder_for,
    write_alone,
)
from service.deliveries.tracking import (
    AnswerTimer,
    Effect,
    Record,
    RetryLater,
    Send,
    SilenceTimer,
    Tracked,
)
from service.kit.base import utcnow
from service.sessions import service as sessions
from service.sessions.models import LiveSession

log = logging.getLogger("service.deliveries")

MIN_WAIT_FOR_UPDATE = 2.0  # seconds a greeting waits for session.updated before going anyway


class TransportClosed(Exception):
    """The session's connection is gone; its end is being handled by whoever holds it."""


class Transport(Protocol):
    """Where a session's control events go: the only thing that differs between kinds."""

    async def send_event(self, event: dict[str, Any]) -> None: ...


class SessionEngine:
    def __init__(
        self,
        session_id: str,
        transport: Transport,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        answer_timeout: float,
    ) -> None:
        self.session_id = session_id
        self.transport = transport
        self.conductor = Conductor(answer_timeout=answer_timeout)
        self._maker = sessionmaker
        self._recorder: Recorder | None = None
        self._drained = False
        self._timers: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()
        self._finished: dict[str, asyncio.Event] = {}
        self.voicelive_session_id: str | None = None
        # The session's row as it opened (sessions/lifecycle.start_engine sets it): what delivery
        # requests need of it (its id, principal and locale) never changes, and while this
        # engine is open the session is live (it closes before the row says ended), so requests
        # skip the read.
        self.session_row: LiveSession | None = None
        # The greeting: sent when the upstream first says session.updated; until it has gone out
        # (or ended), other deliveries wait and caller audio is held back (at most
        # ``_audio_hold`` seconds).
        self.audio_gate = asyncio.Event()
        self.audio_gate.set()
        self._greeter: Callable[[], Coroutine[Any, Any, None]] | None = None
        self._greeting: asyncio.Task[None] | None = None
        self._greeting_id: str | None = None
        self._audio_hold = 0.0
        self._hold_until: float | None = None
        self._pauses = 0  # answer timers armed before the latest pause start again
        # Requests past the queue check whose rows are being committed (the intake writes many
        # at once): they count against the queue limit until they are submitted.
        self.admitting = 0

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._recorder = recorder_for(self._maker)
        self._recorder.attach()

    def greet_with(
        self, greeter: Callable[[], Coroutine[Any, Any, None]], audio_hold: float
    ) -> None:
        """Run ``greeter`` on the first session.updated; it must end with ``greeting_queued``."""
        self._greeter, self._audio_hold = greeter, audio_hold
        self.conductor.held = True
        self.audio_gate.clear()

    async def greeting_queued(self, tracked: Tracked | None) -> None:
        """The greeting is decided: ``tracked`` goes first (None: there is none to send)."""
        self.conductor.held = False
        if tracked is None:
            self.audio_gate.set()
            await self._execute(self.conductor.pump(utcnow()))
            return
        self._greeting_id = tracked.id  # _greeting_gone opens the gate once it is sent or ended
        await self.submit(tracked)

    async def caller_audio_allowed(self) -> None:
        """Returns when caller audio may go upstream: the greeting went first, or the hold ended."""
        if self.audio_gate.is_set():
            return
        if self._hold_until is None:  # the hold counts from the first caller audio held
            self._hold_until = asyncio.get_running_loop().time() + self._audio_hold
        try:
            async with asyncio.timeout_at(self._hold_until):
                await self.audio_gate.wait()
        except TimeoutError:
            log.warning(
                "session %s: caller audio held %.1f s for the greeting; let through",
                self.session_id,
                self._audio_hold,
            )
            self.audio_gate.set()

    async def close(self, reason: str) -> None:
        """The session ended: expire what waits and fail what played. The engine stays usable for
        records (a request arriving now is expired, with its record) until ``drain``."""
        if self._greeting is not None and not self._greeting.done():
            self._greeting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._greeting
        self._execute_now(self.conductor.close(utcnow(), reason))
        for timer in self._timers:
            timer.cancel()
        for timer in list(self._timers):
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def drain(self) -> None:
        """Wait until every record is persisted; later ones are written one by one."""
        self._drained = True
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            try:
                await recorder.written()
            finally:
                recorder.detach()

    def record_later(self, job: Job) -> None:
        """Persist something in order with the session's transitions (e.g. its Voice Live id)."""
        self._enqueue(Entry(self.session_id, "a session detail", job=job))

    def _enqueue(self, entry: Entry) -> None:
        if self._recorder is not None and not self._drained:
            self._recorder.put(entry)
            return
        task = asyncio.create_task(write_alone(self._maker, entry, gate_for(self._maker)))
        self._timers.add(task)  # held, so it is not collected before it ran
        task.add_done_callback(self._timers.discard)

    # --- inputs ---------------------------------------------------------------------------------

    def queued(self) -> int:
        return len(self.conductor.queue)

    @property
    def closed(self) -> bool:
        return self.conductor.closed

    async def submit(self, tracked: Tracked) -> None:
        self._finished.setdefault(tracked.id, asyncio.Event())
        await self._execute(self.conductor.submit(tracked, utcnow()))

    def submit_soon(self, tracked: Tracked) -> None:
        """``submit`` from a task of its own (the request that committed it is gone)."""
        task = asyncio.create_task(self.submit(tracked))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def server_event(self, event: dict[str, Any]) -> None:
        await self._execute(self.conductor.on_server_event(event, utcnow(), time.monotonic()))
        kind = event.get("type")
        if kind == "session.created" and self.voicelive_session_id is None:
            voicelive_id = member(event, "session").get("id")
            if isinstance(voicelive_id, str):
                self.voicelive_session_id = voicelive_id
                session_id = self.session_id
                self.record_later(
                    lambda db: sessions.note_voicelive_id(db, session_id, voicelive_id)
                )
            self._greet_unconfigured()
        elif kind == "session.updated":
            await self._greet(None)

    async def session_open(self) -> None:
        """For a session opened before the engine saw it (an attached agent's connection, whose
        session.created the agent may have read already): it is ready for deliveries now."""
        if not self.conductor.ready:
            self.conductor.ready = True
            self._greet_unconfigured()
            await self._execute(self.conductor.pump(utcnow()))

    def pause(self) -> None:
        """The session cannot be reached for now: deliveries wait (see Conductor.paused), and
        the upstream's answer to what was sent gets its full time again once it is back."""
        self.conductor.paused = True
        self._pauses += 1

    async def resume(self) -> None:
        await self._execute(self.conductor.resume(utcnow(), time.monotonic()))

    def _greet_unconfigured(self) -> None:
        if self._greeter is not None:  # for an agent that never configures its session
            self._later(max(self._audio_hold, MIN_WAIT_FOR_UPDATE), self._greet, None)

    async def _greet(self, _: object) -> None:
        """Start the greeting once: on the first session.updated, or when the agent has not
        configured its session within the audio hold (it is then sent on the defaults)."""
        if self._greeter is not None and self._greeting is None:
            self._greeting = asyncio.create_task(self._greeter(), name=f"greet {self.session_id}")

    async def client_event(
        self, event: dict[str, Any], ahead_of: frozenset[str] = frozenset()
    ) -> None:
        await self._execute(self.conductor.on_client_event(event, utcnow(), ahead_of))

    async def audio(self, nbytes: int) -> None:
        """An audio frame of ``nbytes`` decoded bytes reached the agent (call only while
        ``conductor.tracking_audio``)."""
        await self._execute(self.conductor.on_audio(nbytes, utcnow(), time.monotonic()))

    def finished_signal(self, delivery_id: str) -> asyncio.Event:
        """Set once the delivery reached a final state and that state is persisted."""
        return self._finished.setdefault(delivery_id, asyncio.Event())

    # --- carrying out effects -------------------------------------------------------------------

    def _execute_now(self, effects: list[Effect]) -> list[Send]:
        """Everything but sending, at once and in order, so that records keep the order the
        conductor decided even while a send is awaited."""
        sends: list[Send] = []
        for effect in effects:
            if isinstance(effect, Record):
                label = f"{effect.action} of {effect.delivery_id}"
                done = self._done_callback(effect.delivery_id) if effect.final else None
                self._enqueue(Entry(self.session_id, label, record=effect, done=done))
                if effect.final:
                    self._greeting_gone(effect.delivery_id)
            elif isinstance(effect, AnswerTimer):
                self._arm(effect)
            elif isinstance(effect, SilenceTimer):
                self._later(effect.seconds, self._on_silence, effect)
            elif isinstance(effect, RetryLater):
                self._later(effect.seconds, self._retry, None)
            else:
                sends.append(effect)
        return sends

    async def _execute(self, effects: list[Effect]) -> None:
        for send in self._execute_now(effects):
            async with self._send_lock:
                try:
                    await self.transport.send_event(send.event)
                except TransportClosed:
                    return  # close() fails what was on its way
            if send.delivery_id is not None:
                self._greeting_gone(send.delivery_id)

    def _greeting_gone(self, delivery_id: str) -> None:
        """Caller audio may follow once the greeting went upstream, or ended without going."""
        if delivery_id == self._greeting_id:
            self.audio_gate.set()

    @staticmethod
    def _signal(events: dict[str, asyncio.Event], delivery_id: str) -> None:
        events.setdefault(delivery_id, asyncio.Event()).set()

    def _later(self, seconds: float, action: Callable[[Any], Awaitable[None]], arg: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(seconds)
            await action(arg)

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _arm(self, timer: AnswerTimer) -> None:
        self._later(self.conductor.answer_timeout, self._on_timeout, (timer, self._pauses))

    async def _on_timeout(self, armed: tuple[AnswerTimer, int]) -> None:
        timer, pauses = armed
        if self.conductor.paused or pauses != self._pauses:
            # The session was unreachable meanwhile: the request may have gone out only on
            # resume, or its answer be on the way back. Give it the whole time again.
            self._arm(timer)
            return
        await self._execute(
            self.conductor.on_answer_timeout(timer.delivery_id, timer.event_id, utcnow())
        )

    async def _on_silence(self, timer: SilenceTimer) -> None:
        # Pauses are the conductor's to judge here: it knows when the response was last heard.
        effects = self.conductor.on_silence(
            timer.delivery_id, timer.response_id, utcnow(), time.monotonic()
        )
        await self._execute(effects)

    async def _retry(self, _: object) -> None:
        await self._execute(self.conductor.pump(utcnow()))

    def _done_callback(self, delivery_id: str) -> Callable[[], None]:
        """Once the final state of ``delivery_id`` is persisted: wake whoever waits for it."""
        return lambda: self._signal(self._finished, delivery_id)
