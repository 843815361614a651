"""Who may connect: refusals happen before the WebSocket opens, as plain HTTP statuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.ai.voicelive.aio import ConnectionError as VoiceLiveConnectionError
from azure.ai.voicelive.aio import connect
from azure.ai.voicelive.models import ServerEventSessionCreated
from azure.core.credentials import AccessToken, AzureKeyCredential
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from service.simulator import Simulator
from tests.simulator.helpers import KEY, Peer, peer


class StaticToken:
    """An Entra ID credential stand-in: the SDK sends its token as ``Authorization: Bearer``."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2**31)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None


async def _status_of_raw_handshake(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, **kwargs):
            pass
    return refused.value.response.status_code


async def test_the_right_key_in_the_header_is_accepted(sim: Simulator) -> None:
    async with peer(sim) as client:
        created = client.events[0]
    assert isinstance(created, ServerEventSessionCreated)
    assert sim.sessions[-1].query["model"] == "gpt-realtime"
    assert "api-version" in sim.sessions[-1].query


async def test_a_wrong_key_is_refused_with_401(sim: Simulator) -> None:
    with pytest.raises(VoiceLiveConnectionError, match="401"):
        async with connect(
            endpoint=sim.endpoint, credential=AzureKeyCredential("wrong"), model="gpt-realtime"
        ):
            pass
    assert sim.sessions == []


async def test_no_key_is_refused_with_401(sim: Simulator) -> None:
    assert await _status_of_raw_handshake(sim.url) == 401


async def test_a_bearer_token_is_accepted(sim: Simulator) -> None:
    async with connect(endpoint=sim.endpoint, credential=StaticToken(KEY), model="m") as conn:
        assert isinstance(await conn.recv(), ServerEventSessionCreated)


async def test_the_key_as_query_parameter_is_accepted_and_not_recorded(sim: Simulator) -> None:
    async with ws_connect(f"{sim.url}?api-key={KEY}&model=m") as ws:
        first = json.loads(await ws.recv())
    assert first["type"] == "session.created"
    assert sim.sessions[-1].query == {"model": "m"}


async def test_refusing_connections_answers_503(sim: Simulator) -> None:
    sim.configure(refuse_connections=True)
    with pytest.raises(VoiceLiveConnectionError, match="503"):
        async with connect(endpoint=sim.endpoint, credential=AzureKeyCredential(KEY), model="m"):
            pass


async def test_another_path_is_404(sim: Simulator) -> None:
    url = sim.url.replace("/voice-live/realtime", "/elsewhere")
    assert await _status_of_raw_handshake(url, additional_headers={"api-key": KEY}) == 404


async def test_an_endpoint_with_a_path_prefix_works(sim: Simulator) -> None:
    async with connect(
        endpoint=sim.endpoint + "/some/prefix", credential=AzureKeyCredential(KEY), model="m"
    ) as conn:
        assert isinstance(await conn.recv(), ServerEventSessionCreated)


async def test_without_a_configured_key_anyone_connects() -> None:
    async with Simulator() as open_sim, peer(open_sim, key="anything") as client:
        assert isinstance(client, Peer)
