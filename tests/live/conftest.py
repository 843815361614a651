from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from service.app import create_app
from service.kit.serving import serving
from service.settings import Settings
from service.simulator import Simulator, SimulatorConfig
from tests.helpers import ADMIN_KEY, Api
from tests.live.harness import Live

# Scenarios open sessions and poll records with one agent key faster than any real agent would
# (the churn test opens 1000 sessions in seconds): limits that never trip. The limits themselves
# are tested in test_connection_limits_e2e.py (and tests/access/test_rate_limits.py).
GENEROUS_LIMITS: dict[str, object] = {
    "rate_limit_per_second": 100_000,
    "rate_limit_burst": 100_000,
    "auth_failure_limit_burst": 100_000,
    "session_rate_limit_per_second": 100_000,
    "session_rate_limit_burst": 100_000,
}


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """Override in a module to change how the upstream behaves."""
    return SimulatorConfig(speed=20)


@pytest.fixture
def live_settings(database_url: str) -> dict[str, object]:
    """Override (or extend) in a module to change the service's settings."""
    return {}


@pytest.fixture(params=["relay", "attached"])
def session_kind(request: pytest.FixtureRequest) -> str:
    """How the agent reaches Voice Live: every scenario runs through the relay and attached.
    A module about the relay itself overrides this with "relay" only."""
    kind: str = request.param
    return kind


@pytest.fixture
async def live(
    database_url: str,
    simulator_config: SimulatorConfig,
    live_settings: dict[str, object],
    session_kind: str,
) -> AsyncIterator[Live]:
    async with Simulator(simulator_config) as simulator:
        settings = Settings(
            database_url=database_url,
            bootstrap_admin_key=SecretStr(ADMIN_KEY),
            auto_migrate=False,
            voicelive_endpoint=simulator.endpoint,
            voicelive_api_key=SecretStr("upstream-key"),
            **{"delivery_answer_timeout": 5.0, **GENEROUS_LIMITS, **live_settings},  # type: ignore[arg-type]
        )
        app = create_app(settings)
        async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            yield Live(app, base_url, await Api.with_keys(http), simulator, session_kind)
