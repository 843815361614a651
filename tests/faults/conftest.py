"""Fault tests: a real service on a real port in front of a real simulator told to misbehave, or
a real ``compliance-service serve`` process killed for real. Each test asserts what a user would
notice: a delivery's final status and reason, a session's end reason, close codes, and an audit
chain that still verifies."""

from __future__ import annotations

from tests.live.conftest import live, live_settings, session_kind, simulator_config

__all__ = ["live", "live_settings", "session_kind", "simulator_config"]
