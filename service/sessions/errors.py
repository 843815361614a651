from __future__ import annotations

from service.kit.errors import NotFound


class SessionNotFound(NotFound):
    slug = "session-not-found"
    title = "Unknown session"
