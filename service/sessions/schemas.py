from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class Kind(StrEnum):
    RELAY = "relay"
    ATTACHED = "attached"


class State(StrEnum):
    LIVE = "live"
    CLOSED = "closed"


class SessionRead(BaseModel):
    id: str = Field(description="The service's session id.")
    voicelive_session_id: str | None = Field(
        description="The id the client saw in session.created (also accepted as {id})."
    )
    kind: Kind
    state: State
    conversation_key: str | None
    locale: str | None
    principal: str = Field(description="The agent principal that opened it.")
    model: str | None
    greeting_policy: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


class SessionList(BaseModel):
    items: list[SessionRead]
    next_cursor: str | None
