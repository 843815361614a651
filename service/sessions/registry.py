"""The live sessions this process holds a socket for. Everything else about a session is in the
database; only the socket and its queue (inside the engine) live here."""

from __future__ import annotations

from service.deliveries.engine import SessionEngine


class LiveSessions:
    def __init__(self) -> None:
        self._engines: dict[str, SessionEngine] = {}

    def add(self, engine: SessionEngine) -> None:
        self._engines[engine.session_id] = engine

    def remove(self, session_id: str) -> None:
        self._engines.pop(session_id, None)

    def get(self, session_id: str) -> SessionEngine | None:
        return self._engines.get(session_id)

    def engines(self) -> list[SessionEngine]:
        return list(self._engines.values())

    def __len__(self) -> int:
        return len(self._engines)
