from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.simulator import Simulator, SimulatorConfig
from tests.simulator.helpers import KEY


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator on a free port, sending audio as fast as it can."""
    async with Simulator(SimulatorConfig(api_key=KEY, speed=0)) as simulator:
        yield simulator
