"""Apps of the kit tests' own: a small body limit, and one with a deliberately broken endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from service.access import service as access
from service.access.dependencies import Editor
from service.access.roles import Role
from service.app import create_app
from service.kit.db import DB
from service.settings import Settings
from tests.helpers import Api

SMALL_LIMIT = 1024  # the smallest limit the settings accept
SECRET_DETAIL = "boom: password=hunter2 in /srv/secret/internals.py"
EXPLODE_PATH = "/v1/test-only/explode"


@pytest.fixture
async def small_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The test database, served by an app that refuses bodies over SMALL_LIMIT bytes."""
    app = create_app(settings.model_copy(update={"max_body_bytes": SMALL_LIMIT}))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def small_api(small_app: FastAPI) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=small_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield await Api.with_keys(http)


def add_exploding_endpoint(app: FastAPI) -> None:
    """An endpoint that writes (a key and its audit event) and then fails unexpectedly."""

    async def explode(caller: Editor, db: DB) -> None:
        await access.create_key(db, caller.actor, principal="ghost", roles=[Role.AGENT])
        raise RuntimeError(SECRET_DETAIL)

    app.add_api_route(EXPLODE_PATH, explode, methods=["POST"])


@pytest.fixture
async def fragile_api(settings: Settings) -> AsyncIterator[Api]:
    """Like `api`, on an app with the exploding endpoint; its client gets the 500 response a real
    server sends rather than the exception, which the ASGI stack re-raises for servers to log."""
    app = create_app(settings)
    add_exploding_endpoint(app)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield await Api.with_keys(http)
