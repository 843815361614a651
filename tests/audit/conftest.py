"""Fixtures of the audit tests (the shared harness is tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.kit.db import create_engine


@pytest.fixture
async def attacker(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A connection to the test's database of its own, outside the service: someone holding the
    database owner's credentials."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
