"""Fixtures for the phrase library tests: apps with settings of their own, beside the shared one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from service.app import create_app
from service.settings import Settings
from tests.helpers import ADMIN_KEY, Api
from tests.phrases.support import MakeApi


@pytest.fixture
async def make_api() -> AsyncIterator[MakeApi]:
    """Build an app (lifespan running) on the given settings; an Api with every role's keys."""
    async with AsyncExitStack() as stack:

        async def build(settings: Settings) -> Api:
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
            )
            return await Api.with_keys(http)

        yield build


@pytest.fixture
async def two_approvals_api(settings: Settings, make_api: MakeApi) -> Api:
    """The test database, served by an app that needs two distinct approvals per version."""
    return await make_api(settings.model_copy(update={"approvals_required": 2}))


@pytest.fixture
def fresh_settings(fresh_database: str) -> Settings:
    """Settings for an empty database of the backend under test (migrated when an app starts)."""
    return Settings(
        database_url=fresh_database, bootstrap_admin_key=SecretStr(ADMIN_KEY), auto_migrate=True
    )


@pytest.fixture
async def fresh_api(fresh_settings: Settings, make_api: MakeApi) -> Api:
    """A second, empty library, beside the one `api` serves."""
    return await make_api(fresh_settings)


@dataclass
class Replica:
    app: FastAPI
    api: Api


@pytest.fixture
async def replica(settings: Settings, api: Api) -> AsyncIterator[Replica]:
    """A second app on the test's database, as a second replica of the service would be: its own
    engine, its own caches. It speaks with the same keys as ``api``."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield Replica(app, Api(http, dict(api.keys)))
