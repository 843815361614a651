"""Fixtures for the access tests: a direct line to the database, to see what is really stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.kit.db import create_engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of its own on the test's database (the app's is its own business)."""
    own = create_engine(database_url)
    yield own
    await own.dispose()
