"""Attached sessions end to end: the real service on a real port (the ``live`` fixture of
tests/live, reused as it is), the real simulator as the agent's own Voice Live, the official SDK,
and the connector; every test here is about the attached kind."""

from __future__ import annotations

import pytest

# The end-to-end fixtures, reused: pytest registers fixtures a conftest imports.
from tests.live.conftest import live, live_settings, simulator_config

__all__ = ["live", "live_settings", "session_kind", "simulator_config"]


@pytest.fixture
def session_kind() -> str:
    """Every agent in this directory holds its own connection and attaches it."""
    return "attached"
