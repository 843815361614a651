"""The application shell: probes, the first admin key, refusing a schema it was not built for."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from service.app import create_app
from service.kit import migrate
from service.kit.db import create_engine, create_sessionmaker
from service.settings import Settings
from tests.helpers import ADMIN_KEY, assert_problem, auth

GENERATED_KEY = re.compile(r"cms_[A-Za-z0-9_-]{20,}")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


class TestProbes:
    async def test_healthz_answers_without_a_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_answers_ready_without_a_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ready"}

    async def test_readyz_is_a_503_problem_when_the_database_is_gone(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            broken = create_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
            app.state.read_sessionmaker = create_sessionmaker(broken, read_only=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                response = await http.get("/readyz")
            await broken.dispose()

        assert_problem(response, 503, "not-ready")

    async def test_metrics_count_deliveries_by_status_without_a_key(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        lines = response.text.splitlines()
        assert "compliance_live_sessions 0" in lines
        assert 'compliance_deliveries{kind="phrase",status="completed"} 0' in lines
        assert "# TYPE compliance_deliveries gauge" in lines


class TestBootstrapAdminKey:
    async def test_configured_bootstrap_key_is_the_admin_key(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.get("/v1/api-keys", headers=auth(ADMIN_KEY))

        assert response.status_code == 200, response.text
        [only] = response.json()["items"]
        assert (only["principal"], only["roles"]) == ("admin", ["admin"])

    async def test_bootstrap_key_is_ignored_once_an_admin_key_exists(
        self, settings: Settings
    ) -> None:
        async with running(settings) as http:
            assert (await http.get("/v1/api-keys", headers=auth(ADMIN_KEY))).status_code == 200

        other = "another-bootstrap-key-0123456789"
        restarted = settings.model_copy(update={"bootstrap_admin_key": SecretStr(other)})
        async with running(restarted) as http:
            assert_problem(await http.get("/v1/api-keys", headers=auth(other)), 401)
            listed = await http.get("/v1/api-keys", headers=auth(ADMIN_KEY))
            assert len(listed.json()["items"]) == 1

    async def test_generated_key_is_printed_once_and_never_logged(
        self,
        fresh_database: str,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        settings = Settings(database_url=fresh_database, bootstrap_admin_key=None)

        async with running(settings) as http:
            first = capsys.readouterr()
            keys = GENERATED_KEY.findall(first.out)
            assert len(keys) == 1, first.out
            key = keys[0]
            listed = await http.get("/v1/api-keys", headers=auth(key))
            assert listed.status_code == 200, listed.text

        async with running(settings) as http:
            second = capsys.readouterr()
            assert (await http.get("/v1/api-keys", headers=auth(key))).status_code == 200

        assert GENERATED_KEY.search(second.out) is None, second.out
        assert key not in first.err + second.err
        assert caplog.records, "nothing was logged: the check below would prove nothing"
        for record in caplog.records:
            assert key not in json.dumps(record.__dict__, default=str), record


class TestSchemaCheck:
    async def test_unmigrated_database_without_auto_migrate_is_refused(
        self, fresh_database: str
    ) -> None:
        settings = Settings(
            database_url=fresh_database,
            auto_migrate=False,
            bootstrap_admin_key=SecretStr(ADMIN_KEY),
        )

        with pytest.raises(RuntimeError, match="compliance-service migrate") as refused:
            async with running(settings):
                pytest.fail("the service started on a database without its schema")

        assert "COMPLIANCE_AUTO_MIGRATE" in str(refused.value)
        engine = create_engine(fresh_database)
        try:
            assert await migrate.current_revision(engine) is None  # and it changed nothing
        finally:
            await engine.dispose()

    async def test_unmigrated_database_is_migrated_on_start_by_default(
        self, fresh_database: str
    ) -> None:
        settings = Settings(database_url=fresh_database, bootstrap_admin_key=SecretStr(ADMIN_KEY))

        async with running(settings) as http:
            response = await http.get("/v1/phrases", headers=auth(ADMIN_KEY))

        assert response.status_code == 200, response.text
