"""Running the Alembic migrations from inside the service (on start, from the CLI, in tests)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

_PACKAGE = Path(__file__).resolve().parents[1]
# An installed wheel carries the migrations inside the package; a checkout has them at the top.
_CANDIDATES = (_PACKAGE / "_migrations", _PACKAGE.parent / "migrations")
_MIGRATION_LOCK_ID = 0x6D696772  # "migr": replicas starting together migrate one at a time


def migrations_dir() -> Path:
    for candidate in _CANDIDATES:
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("migrations not found next to the service package")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def _run(connection: sa.Connection, target: str, *, down: bool) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
    config = alembic_config()
    config.attributes["connection"] = connection
    if down:
        command.downgrade(config, target)
    else:
        command.upgrade(config, target)


async def upgrade(engine: AsyncEngine, target: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_run, target, down=False)


async def downgrade(engine: AsyncEngine, target: str = "base") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_run, target, down=True)


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def require_head(engine: AsyncEngine) -> None:
    """Refuse to serve on a schema other than the one this code was written for."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    current = await current_revision(engine)
    if current != head:
        raise RuntimeError(
            f"the database schema is at revision {current or 'none'} but this service needs "
            f"{head}: run `compliance-service migrate` (or set COMPLIANCE_AUTO_MIGRATE=true)"
        )


async def prepare(engine: AsyncEngine, *, auto: bool) -> None:
    """Before serving: migrate when allowed, then insist the schema is the one this code knows."""
    if auto:
        await upgrade(engine)
    await require_head(engine)
