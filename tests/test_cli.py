"""`python -m service` (the `compliance-service` command) run as an operator runs it: a process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from pydantic import SecretStr

from service.app import create_app
from service.cli import main
from service.kit import migrate
from service.kit.db import create_engine
from service.settings import Settings
from tests.helpers import (
    ADMIN_KEY,
    Api,
    assert_problem,
    auth,
    cli_environment,
    run_cli,
    run_cli_async,
)

HEAD = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()


async def revision_of(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        return await migrate.current_revision(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def app_on(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url, bootstrap_admin_key=SecretStr(ADMIN_KEY), auto_migrate=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


class TestMigrate:
    def test_migrate_brings_a_fresh_database_to_the_current_schema(
        self, fresh_database: str
    ) -> None:
        result = run_cli("migrate", env=cli_environment(fresh_database))

        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"database at revision {HEAD}"
        assert asyncio.run(revision_of(fresh_database)) == HEAD

    def test_migrate_without_a_database_url_creates_compliance_db_here(
        self, tmp_path: Path
    ) -> None:
        result = run_cli("migrate", env=cli_environment(None), cwd=tmp_path)

        assert result.returncode == 0, result.stderr
        database = tmp_path / "compliance.db"
        assert database.is_file()
        with sqlite3.connect(database) as connection:
            [(revision,)] = connection.execute("SELECT version_num FROM alembic_version")
        assert revision == HEAD


class TestKeysCreate:
    async def test_prints_only_the_key_which_then_works_with_its_roles(
        self, fresh_database: str
    ) -> None:
        result = await run_cli_async(
            "keys",
            "create",
            "--principal",
            "p",
            "--role",
            "editor",
            "--role",
            "approver",
            env=cli_environment(fresh_database),
        )

        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines(keepends=True)
        assert len(lines) == 1, result.stdout
        key = lines[0].removesuffix("\n")
        assert key == key.strip()
        assert len(key) >= 32
        # The change is audited on stderr as one JSON line, like the server's, without the key.
        logged = [json.loads(line) for line in result.stderr.splitlines() if "audit_event" in line]
        assert [e["audit_event"]["action"] for e in logged] == ["api_key.created"]
        assert key not in result.stderr

        async with app_on(fresh_database) as http:
            keys = await http.get("/v1/api-keys", headers=auth(ADMIN_KEY))
            [entry] = [k for k in keys.json()["items"] if k["principal"] == "p"]
            assert entry["roles"] == ["approver", "editor"]
            assert entry["created_by"].startswith("cli:")

            created = await http.post(
                "/v1/phrases",
                json={"key": "cli", "title": "T", "category": "other", "default_locale": "en"},
                headers=auth(key),
            )
            assert created.status_code == 201, created.text
            assert created.json()["created_by"] == "p"
            approving = await http.post(
                "/v1/phrases/cli/versions/1/approve", json={}, headers=auth(key)
            )
            assert_problem(approving, 404)  # past the role check: there is no version 1
            assert_problem(await http.get("/v1/audit", headers=auth(key)), 403, "forbidden")

    def test_unknown_role_is_refused_and_prints_no_key(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["keys", "create", "--principal", "p", "--role", "superuser"])

        assert exited.value.code == 2
        output = capsys.readouterr()
        assert output.out == ""
        assert "superuser" in output.err

    def test_principal_the_api_would_refuse_is_refused_and_stores_nothing(
        self,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        for name, value in cli_environment(database_url).items():
            monkeypatch.setenv(name, value)

        # "alice " is not alice: a second principal for one person would defeat four eyes.
        for principal in ("alice ", "", "two words", "-dash-first"):
            code = main(["keys", "create", f"--principal={principal}", "--role", "approver"])

            output = capsys.readouterr()
            assert code == 2, principal
            assert output.out == "", principal
            assert "principal" in output.err, output.err
        assert asyncio.run(stored_principals(database_url)) == []


async def stored_principals(database_url: str) -> list[str]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT principal FROM api_keys"))
            return [row.principal for row in rows]
    finally:
        await engine.dispose()


class TestAuditVerify:
    async def test_intact_chain_is_ok_and_exits_0(self, api: Api, database_url: str) -> None:
        events = await api.http.get("/v1/audit", headers=api.as_("audrey"))

        result = await run_cli_async("audit", "verify", env=cli_environment(database_url))

        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is True
        assert report["checked"] == len(events.json()["items"]) > 1
        assert report["first_bad_seq"] is None

    async def test_altered_event_is_reported_and_exits_1(self, api: Api, database_url: str) -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as connection:
                # Someone with direct database access, getting past the append-only triggers.
                if connection.dialect.name == "postgresql":
                    await connection.execute(
                        sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER")
                    )
                else:
                    await connection.execute(sa.text("DROP TRIGGER audit_events_no_update"))
                await connection.execute(
                    sa.text("UPDATE audit_events SET principal = 'mallory' WHERE seq = 2")
                )
        finally:
            await engine.dispose()

        result = await run_cli_async("audit", "verify", env=cli_environment(database_url))

        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is False
        assert report["first_bad_seq"] == 2

    def test_missing_database_is_refused_not_created(self, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere.db"

        result = run_cli(
            "audit", "verify", env=cli_environment(f"sqlite:///{missing}"), cwd=tmp_path
        )

        assert result.returncode == 2
        assert "no database at" in result.stderr
        assert not missing.exists()


class TestSettingsErrors:
    def test_invalid_settings_are_named_without_their_values(self, tmp_path: Path) -> None:
        secret = "short-secret"  # under the 16 characters a bootstrap key needs
        env = cli_environment(None, COMPLIANCE_BOOTSTRAP_ADMIN_KEY=secret)

        result = run_cli("migrate", env=env, cwd=tmp_path)

        assert result.returncode == 2
        assert "bootstrap_admin_key" in result.stderr
        assert secret not in result.stderr + result.stdout


class TestServe:
    def test_unmigrated_database_without_auto_migrate_is_refused(self, fresh_database: str) -> None:
        env = cli_environment(fresh_database, COMPLIANCE_AUTO_MIGRATE="false")

        result = run_cli("serve", "--port", "0", env=env)

        assert result.returncode != 0
        assert "compliance-service migrate" in result.stderr
        assert asyncio.run(revision_of(fresh_database)) is None
