"""Test harness: every test gets its own database built by the real migrations.

SQLite (default): the migrated template file is copied per test. PostgreSQL (set
COMPLIANCE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test): a migrated template
database is cloned per test with CREATE DATABASE ... TEMPLATE. The server must be reachable: the
PostgreSQL pass fails, never skips, when it is not.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from service.app import create_app
from service.kit import migrate
from service.kit.db import create_engine
from service.settings import Settings
from tests.helpers import ADMIN_KEY, Api

TEST_DATABASE_URL = os.environ.get("COMPLIANCE_TEST_DATABASE_URL", "")


def backend() -> str:
    return "postgresql" if TEST_DATABASE_URL.startswith("postgresql") else "sqlite"


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


class PostgresDatabases:
    """Creates databases next to the one named by the admin URL (which must exist)."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)

    def url_for(self, name: str) -> str:
        return self.admin.set(database=name).render_as_string(hide_password=False)

    async def _execute(self, sql: str) -> None:
        conn = await asyncpg.connect(
            host=self.admin.host or "127.0.0.1",
            port=self.admin.port or 5432,
            user=self.admin.username or "postgres",
            password=self.admin.password,
            database=self.admin.database,
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create(self, name: str, template: str | None = None) -> str:
        suffix = f" TEMPLATE {template}" if template else ""
        asyncio.run(self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        asyncio.run(self._execute(f"CREATE DATABASE {name}{suffix}"))
        return self.url_for(name)

    def drop(self, name: str) -> None:
        asyncio.run(self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="session")
def postgres() -> PostgresDatabases | None:
    return PostgresDatabases(TEST_DATABASE_URL) if backend() == "postgresql" else None


@pytest.fixture(scope="session")
def template_database(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresDatabases | None
) -> Iterator[str]:
    """A database migrated once per run; tests get copies of it."""
    if postgres is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        asyncio.run(_migrate(f"sqlite:///{path}"))
        yield str(path)
        return
    name = f"cms_template_{os.getpid()}"
    asyncio.run(_migrate(postgres.create(name)))
    yield name
    postgres.drop(name)


@pytest.fixture
def fresh_database(
    tmp_path: Path, template_database: str, postgres: PostgresDatabases | None
) -> Iterator[str]:
    """The URL of an empty, unmigrated database of the backend under test."""
    if postgres is None:
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"cms_fresh_{uuid.uuid4().hex[:12]}"
    url = postgres.create(name)
    yield url
    postgres.drop(name)


@pytest.fixture
def database_url(
    tmp_path: Path, template_database: str, postgres: PostgresDatabases | None
) -> Iterator[str]:
    """The URL of a migrated database of its own for this test."""
    if postgres is None:
        path = tmp_path / "test.db"
        shutil.copyfile(template_database, path)
        yield f"sqlite:///{path}"
        return
    name = f"cms_t_{uuid.uuid4().hex[:12]}"
    url = postgres.create(name, template=template_database)
    yield url
    postgres.drop(name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        bootstrap_admin_key=SecretStr(ADMIN_KEY),
        auto_migrate=False,
        # Tests present unknown keys to every route from one address; the limit of such keys
        # per address has tests of its own (tests/access/test_rate_limits.py).
        auth_failure_limit_burst=100_000,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
async def api(client: httpx.AsyncClient) -> Api:
    """A client with a key per role already made (see tests.helpers.Api)."""
    return await Api.with_keys(client)
