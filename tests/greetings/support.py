"""Steps the greeting tests share: policies through the API, sessions and deliveries straight into
the database (the relay that writes them is not part of this package)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.deliveries.models import Delivery
from service.sessions.models import LiveSession
from tests.helpers import Api

URL = "/v1/greeting-policies"


def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    result: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return result


def generated(name: str = "welcome", **fields: Any) -> dict[str, Any]:
    return {"name": name, "mode": "generated", "instructions": "Greet the caller warmly.", **fields}


def pregenerated(name: str = "welcome", phrase_key: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"name": name, "mode": "pregenerated", "phrase_key": phrase_key, **fields}


async def post_policy(api: Api, body: dict[str, Any], who: str = "alice") -> httpx.Response:
    return await api.http.post(URL, json=body, headers=api.as_(who))


async def create_policy(api: Api, body: dict[str, Any], who: str = "alice") -> dict[str, Any]:
    response = await post_policy(api, body, who)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def put_policy(
    api: Api, name: str, body: dict[str, Any], who: str = "alice"
) -> httpx.Response:
    return await api.http.put(f"{URL}/{name}", json=body, headers=api.as_(who))


async def policies(api: Api) -> list[dict[str, Any]]:
    response = await api.http.get(URL, headers=api.as_("agent-1"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def greeting_events(api: Api) -> list[dict[str, Any]]:
    response = await api.http.get(
        "/v1/audit",
        params={"subject_type": "greeting_policy", "limit": 500},
        headers=api.as_("audrey"),
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def new_id() -> str:
    return uuid.uuid4().hex


def live_session(conversation_key: str = "conv-1", **fields: Any) -> LiveSession:
    return LiveSession(
        id=new_id(),
        kind="relay",
        state="live",
        conversation_key=conversation_key,
        principal="agent-1",
        **fields,
    )


def greeting(
    session: LiveSession, status: str = "queued", first_audio_at: datetime | None = None
) -> Delivery:
    return Delivery(
        id=new_id(),
        session_id=session.id,
        kind="greeting",
        greeting_policy="welcome",
        status=status,
        priority="append",
        interruptible=False,
        requested_by="agent-1",
        first_audio_at=first_audio_at,
    )
