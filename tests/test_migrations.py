"""The Alembic migrations: they build exactly the schema the ORM models describe, the audit table's
append-only triggers included, and they reverse cleanly."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.kit import migrate
from service.kit.db import create_engine
from service.models import Base
from service.settings import Settings
from tests.helpers import ADMIN_KEY, cli_environment, run_cli_async

ROOT = Path(__file__).resolve().parents[1]
APP_TABLES = set(Base.metadata.tables)
TRIGGERS = {
    "sqlite": {
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_checkpoints_no_update",
        "audit_checkpoints_no_delete",
    },
    "postgresql": {"audit_events_append_only", "audit_events_no_truncate"},
}


@pytest.fixture
async def engine(fresh_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_database)
    yield engine
    await engine.dispose()


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        names: list[str] = await connection.run_sync(lambda c: sa.inspect(c).get_table_names())
    return set(names)


async def triggers(engine: AsyncEngine) -> set[str]:
    if engine.dialect.name == "postgresql":
        query = (
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgrelid = 'audit_events'::regclass"
        )
        if "audit_events" not in await tables(engine):
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    async with engine.connect() as connection:
        return set((await connection.execute(sa.text(query))).scalars())


async def functions(engine: AsyncEngine) -> set[str]:
    if engine.dialect.name != "postgresql":
        return set()
    query = (
        "SELECT proname FROM pg_proc JOIN pg_namespace n ON n.oid = pronamespace"
        " WHERE nspname = 'public'"
    )
    async with engine.connect() as connection:
        return set((await connection.execute(sa.text(query))).scalars())


async def differences(engine: AsyncEngine) -> list[Any]:
    def compare(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": Base.metadata}
        )
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)


async def refuses_update(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO audit_events (seq, at, principal, action, subject_type, subject_id,"
                " details, prev_hash, hash) VALUES (1, CURRENT_TIMESTAMP, 'p', 'a', 't', 's',"
                " '{}', :zero, :one)"
            ),
            {"zero": "0" * 64, "one": "1" * 64},
        )
    for statement in ("UPDATE audit_events SET principal = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with engine.begin() as connection:
                await connection.execute(sa.text(statement))


class TestHistory:
    def test_one_linear_history_with_a_single_head(self) -> None:
        scripts = script()
        assert len(scripts.get_heads()) == 1
        assert len(scripts.get_bases()) == 1
        revisions = list(scripts.walk_revisions())
        assert all(not r.is_merge_point for r in revisions)

    def test_the_model_registry_knows_every_table(self) -> None:
        assert {
            "api_keys",
            "audit_events",
            "phrases",
            "phrase_tags",
            "phrase_versions",
            "version_texts",
            "version_approvals",
        } <= APP_TABLES


class TestUpgrade:
    async def test_an_empty_database_is_at_no_revision_and_the_service_refuses_it(
        self, engine: AsyncEngine, fresh_database: str
    ) -> None:
        assert await migrate.current_revision(engine) is None
        with pytest.raises(RuntimeError, match="compliance-service migrate"):
            await migrate.require_head(engine)
        app = create_app(
            Settings(
                database_url=fresh_database,
                bootstrap_admin_key=ADMIN_KEY,
                auto_migrate=False,
            )
        )
        with pytest.raises(RuntimeError, match="revision none"):
            async with app.router.lifespan_context(app):
                pass

    async def test_upgrade_head_creates_every_table_and_the_triggers(
        self, engine: AsyncEngine
    ) -> None:
        await migrate.upgrade(engine)
        assert await tables(engine) == APP_TABLES | {"alembic_version"}
        assert await triggers(engine) == TRIGGERS[engine.dialect.name]
        assert await migrate.current_revision(engine) == script().get_current_head()
        await migrate.require_head(engine)
        await refuses_update(engine)

    async def test_upgrading_again_changes_nothing(self, engine: AsyncEngine) -> None:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)
        assert await tables(engine) == APP_TABLES | {"alembic_version"}
        assert await migrate.current_revision(engine) == script().get_current_head()

    async def test_the_models_and_the_migrations_agree(self, engine: AsyncEngine) -> None:
        await migrate.upgrade(engine)
        assert await differences(engine) == []

    async def test_a_schema_that_drifted_from_the_models_is_noticed(
        self, engine: AsyncEngine
    ) -> None:
        """The comparison above can fail: a schema changed by hand shows up as differences."""
        await migrate.upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(sa.text("DROP INDEX ix_phrases_category"))
            await connection.execute(sa.text("ALTER TABLE phrases ADD COLUMN stray INTEGER"))
        found = await differences(engine)
        kinds = sorted(diff[0] for diff in found)
        assert kinds == ["add_index", "remove_column"], found

    async def test_a_fresh_database_bootstraps_its_admin_key_on_start(
        self, fresh_database: str, engine: AsyncEngine
    ) -> None:
        app = create_app(
            Settings(
                database_url=fresh_database,
                bootstrap_admin_key=ADMIN_KEY,
                auto_migrate=True,
            )
        )
        async with app.router.lifespan_context(app):
            pass
        assert await migrate.current_revision(engine) == script().get_current_head()
        async with engine.connect() as connection:
            count = await connection.scalar(sa.text("SELECT count(*) FROM audit_events"))
        assert count == 1


class TestDowngrade:
    async def test_downgrade_base_removes_every_table_and_upgrade_works_again(
        self, engine: AsyncEngine
    ) -> None:
        await migrate.upgrade(engine)
        base_functions = await functions(engine)
        await migrate.downgrade(engine, "base")
        assert await tables(engine) <= {"alembic_version"}
        assert await triggers(engine) == set()
        assert not {f for f in await functions(engine) if f.startswith("audit_events")}
        assert await migrate.current_revision(engine) is None

        await migrate.upgrade(engine)
        assert await tables(engine) == APP_TABLES | {"alembic_version"}
        assert await triggers(engine) == TRIGGERS[engine.dialect.name]
        assert await functions(engine) == base_functions
        assert await migrate.current_revision(engine) == script().get_current_head()
        assert await differences(engine) == []
        await refuses_update(engine)

    async def test_every_revision_steps_down_and_up_again(self, engine: AsyncEngine) -> None:
        revisions = list(reversed(list(script().walk_revisions())))
        for revision in revisions:
            await migrate.upgrade(engine, revision.revision)
            before = await tables(engine)
            await migrate.downgrade(engine, str(revision.down_revision or "base"))
            await migrate.upgrade(engine, revision.revision)
            assert await tables(engine) == before
            assert await migrate.current_revision(engine) == revision.revision


class TestCommandLine:
    async def test_compliance_service_migrate(
        self, fresh_database: str, engine: AsyncEngine
    ) -> None:
        result = await run_cli_async("migrate", env=cli_environment(fresh_database), cwd=ROOT)
        assert result.returncode == 0, result.stderr
        head = script().get_current_head()
        assert f"database at revision {head}" in result.stdout
        assert await tables(engine) == APP_TABLES | {"alembic_version"}

    async def test_plain_alembic_with_the_database_url_from_the_environment(
        self, fresh_database: str, engine: AsyncEngine
    ) -> None:
        env = cli_environment(fresh_database)
        for command in (["upgrade", "head"], ["downgrade", "base"], ["upgrade", "head"]):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "alembic",
                *command,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
            assert process.returncode == 0, stderr.decode()
        assert await tables(engine) == APP_TABLES | {"alembic_version"}
        assert await triggers(engine) == TRIGGERS[engine.dialect.name]
        assert await migrate.current_revision(engine) == script().get_current_head()
