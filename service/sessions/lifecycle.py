"""A live session's engine from start to end, the same for every kind of session: only the
transport (the relay's upstream socket, an attached agent's control channel) differs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.deliveries.engine import SessionEngine, Transport
from service.greetings.opening import greet
from service.sessions import service as sessions
from service.sessions.models import LiveSession
from service.sessions.registry import LiveSessions
from service.settings import Settings


def start_engine(
    session: LiveSession,
    transport: Transport,
    maker: async_sessionmaker[AsyncSession],
    live: LiveSessions,
    settings: Settings,
) -> SessionEngine:
    """The session's engine, with its greeting set up, registered as held by this process."""
    engine = SessionEngine(
        session.id, transport, maker, answer_timeout=settings.delivery_answer_timeout
    )
    engine.session_row = sessions.unchanging(session)  # delivery requests need not read it
    if session.greeting_policy is not None:
        policy = session.greeting_policy

        async def opening() -> None:
            await greet(engine, maker, session, policy, settings.delivery_max_plays)

        engine.greet_with(opening, settings.greeting_audio_hold)
    engine.start()
    live.add(engine)
    return engine


async def finish(
    engine: SessionEngine,
    maker: async_sessionmaker[AsyncSession],
    live: LiveSessions,
    reason: str,
) -> None:
    """End the session with ``reason``. In this order, a delivery requested while the session
    ends is either expired by the closed engine (with its record) or refused because the row
    already says closed."""
    try:
        await engine.close(reason)
    finally:
        try:
            async with maker.begin() as db:
                await sessions.end_session(db, engine.session_id, reason)
        finally:
            live.remove(engine.session_id)
            await engine.drain()
            async with maker.begin() as db:  # a record that could not be written
                await sessions.end_unfinished(db, engine.session_id, reason)
