"""Alembic environment. Metadata comes from the model registry (service.models), so autogenerate
sees every table. The service passes its own open connection in ``config.attributes``; the plain
``alembic`` command line makes an engine from COMPLIANCE_DATABASE_URL."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context

from service.kit.db import create_engine
from service.models import Base
from service.settings import Settings

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_on(connection: sa.Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


def main() -> None:
    url = config.get_main_option("sqlalchemy.url") or Settings().database_url
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
    else:
        asyncio.run(run_with_own_engine(url))


main()
