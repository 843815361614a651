from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.phrases.locales import normalize_locale
from service.sessions.schemas import SessionRead


class AttachedSessionCreate(BaseModel):
    """An agent's own Voice Live connection, registered so the service can speak into it."""

    model_config = ConfigDict(extra="forbid")

    conversation_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Identifies the conversation across reconnects: it is greeted once.",
    )
    locale: str | None = Field(default=None, description="Default locale of its deliveries.")
    greeting: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Greeting policy by name, `none` for no greeting; default: the default one.",
    )
    model: str | None = Field(default=None, max_length=200)
    voicelive_session_id: str | None = Field(
        default=None,
        max_length=200,
        description="The id in session.created, if the agent read it before attaching.",
    )

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        return normalize_locale(value) if value is not None else None


class AttachedSessionRead(SessionRead):
    control_url: str = Field(
        description="The WebSocket the connector opens (with the same key) to carry commands."
    )
