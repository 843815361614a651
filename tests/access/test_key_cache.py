"""Authenticated keys are cached: a revoked key stops working at once in the app that revoked it,
and within the cache's bound in another app on the same database (a second replica)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from service.access.cache import KEY_CACHE_SECONDS, KeyCache, LookupMany, key_cache
from service.access.service import Caller, hash_key
from service.app import create_app
from service.kit.actor import Actor
from service.settings import Settings
from tests.helpers import Api, assert_problem

PHRASES = "/v1/phrases"


@dataclass
class Replica:
    app: FastAPI
    api: Api


@pytest.fixture
async def replica(settings: Settings, api: Api) -> AsyncIterator[Replica]:
    """A second app on the test's database, with the same keys as ``api``."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        yield Replica(app, Api(http, dict(api.keys)))


async def revoke(api: Api, principal: str) -> None:
    keys = (await api.http.get("/v1/api-keys", headers=api.as_("admin"))).json()["items"]
    key_id = next(k["id"] for k in keys if k["principal"] == principal)
    response = await api.http.delete(f"/v1/api-keys/{key_id}", headers=api.as_("admin"))
    assert response.status_code == 200, response.text


async def status(api: Api, who: str) -> int:
    return (await api.http.get(PHRASES, headers=api.as_(who))).status_code


class TestRevocation:
    async def test_a_cached_key_stops_working_at_once_where_it_was_revoked(
        self, api: Api, app: FastAPI
    ) -> None:
        assert await status(api, "alice") == 200  # cached now
        assert key_cache(app.state).held(hash_key(api.keys["alice"])) is not None
        await revoke(api, "alice")
        assert_problem(await api.http.get(PHRASES, headers=api.as_("alice")), 401)
        assert await status(api, "carol") == 200

    async def test_another_replica_stops_accepting_it_within_the_bound(
        self, api: Api, replica: Replica
    ) -> None:
        key_cache(replica.app.state).ttl = 0.3  # the bound, shortened for the test
        assert await status(replica.api, "alice") == 200  # the replica caches alice's key
        revoked_at = time.monotonic()
        await revoke(api, "alice")
        assert await status(api, "alice") == 401
        assert await status(replica.api, "bob") == 200  # a key it never saw: read, valid
        # Until its entry is 0.3 s old the replica may still accept alice, and not after.
        while await status(replica.api, "alice") == 200:
            assert time.monotonic() - revoked_at < 0.3 + 0.2, "accepted past the bound"
            await asyncio.sleep(0.02)
        assert await status(replica.api, "alice") == 401

    async def test_a_key_revoked_in_another_replica_is_refused_there_if_not_cached(
        self, api: Api, replica: Replica
    ) -> None:
        await revoke(api, "dave")
        assert await status(replica.api, "dave") == 401

    async def test_a_new_key_works_at_once_in_every_replica(
        self, api: Api, replica: Replica
    ) -> None:
        unknown = {"Authorization": "Bearer cms_not-yet"}
        assert_problem(await replica.api.http.get(PHRASES, headers=unknown), 401)
        key = await api.new_key("zoe", ["agent"])
        assert (await replica.api.http.get(PHRASES, headers={"api-key": key})).status_code == 200

    async def test_the_default_bound_is_what_the_readme_says(self, app: FastAPI) -> None:
        assert key_cache(app.state).ttl == KEY_CACHE_SECONDS == 2.0

    async def test_a_key_revoked_outside_the_service_expires_from_the_cache(
        self, api: Api, app: FastAPI, engine: AsyncEngine
    ) -> None:
        key_cache(app.state).ttl = 0.3
        assert await status(api, "audrey") == 200
        async with engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE principal = :p"),
                {"p": "audrey"},
            )
        await asyncio.sleep(0.35)
        assert await status(api, "audrey") == 401


ALICE = Caller(Actor("alice", "key-1"), frozenset())


class Lookups:
    """A key lookup that answers when the test says so."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[Caller | None]] = []

    async def __call__(self) -> Caller | None:
        future: asyncio.Future[Caller | None] = asyncio.get_running_loop().create_future()
        self.started.append(future)
        return await future


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestKeyCache:
    async def test_concurrent_misses_share_one_lookup(self) -> None:
        cache, lookups = KeyCache(ttl=60), Lookups()
        waiting = [asyncio.create_task(cache.caller("h", lookups)) for _ in range(5)]
        await settle()
        assert len(lookups.started) == 1
        lookups.started[0].set_result(ALICE)
        assert await asyncio.gather(*waiting) == [ALICE] * 5
        assert await cache.caller("h", lookups) == ALICE
        assert cache.lookups == 1

    async def test_a_lookup_that_began_before_a_revocation_here_counts_for_nobody(self) -> None:
        cache, lookups = KeyCache(ttl=60), Lookups()
        early = asyncio.create_task(cache.caller("h", lookups))  # reads the key ...
        await settle()
        cache.forget("h")  # ... a revocation commits here ...
        late = asyncio.create_task(cache.caller("h", lookups))  # a request after it
        await settle()
        assert len(lookups.started) == 2  # the late request did not join the early lookup
        lookups.started[0].set_result(ALICE)  # ... the early read comes back: valid, it says
        assert await early == ALICE  # (that request was under way before the revocation)
        lookups.started[1].set_result(None)
        assert await late is None
        assert cache.held("h") is None  # nothing was kept from the early read

    async def test_a_key_past_half_its_time_is_served_while_it_is_read_again(self) -> None:
        cache, lookups = KeyCache(ttl=0.2), Lookups()
        first = asyncio.create_task(cache.caller("h", lookups))
        await settle()
        lookups.started[0].set_result(ALICE)
        assert await first == ALICE
        await asyncio.sleep(0.12)
        assert await cache.caller("h", lookups) == ALICE  # served at once ...
        await settle()
        assert len(lookups.started) == 2  # ... and looked up again in the background
        lookups.started[1].set_result(None)  # revoked meanwhile, says the database
        await settle()
        assert cache.held("h") is None  # dropped at once, before its time ran out

    async def test_entries_run_out_after_the_ttl_counted_from_the_read(self) -> None:
        cache, lookups = KeyCache(ttl=0.1), Lookups()
        first = asyncio.create_task(cache.caller("h", lookups))
        await settle()
        lookups.started[0].set_result(ALICE)
        await first
        await asyncio.sleep(0.11)
        expired = asyncio.create_task(cache.caller("h", lookups))
        await settle()
        assert not expired.done()  # not served from memory: it waits for the database
        lookups.started[-1].set_result(None)
        assert await expired is None

    async def test_it_holds_a_bounded_number_of_keys(self) -> None:
        cache = KeyCache(ttl=60, max_keys=2)
        for name in ("a", "b", "c"):
            await cache.caller(name, alice)
        assert [cache.held(n) for n in ("a", "b", "c")] == [None, ALICE, ALICE]
        assert len(cache) == 2

    async def test_a_ttl_of_zero_keeps_nothing(self) -> None:
        cache = KeyCache(ttl=0)
        assert await cache.caller("h", alice) == ALICE
        assert await cache.caller("h", alice) == ALICE
        assert cache.lookups == 2


class Reads(list[list[str]]):
    """What each background read asked for."""


class TestKeysInUseStayFresh:
    """A key in use is read again in the background before it runs out, so that an agent whose
    requests come seconds apart never waits for the database to be recognised."""

    @staticmethod
    def reader(answer: dict[str, Caller], reads: Reads) -> LookupMany:
        async def read_many(hashes: list[str]) -> dict[str, Caller]:
            reads.append(list(hashes))
            return {h: answer[h] for h in hashes if h in answer}

        return read_many

    async def test_a_key_used_once_is_still_held_long_after_its_ttl(self) -> None:
        cache, reads = KeyCache(ttl=0.3), Reads()
        cache.start(self.reader({"h": ALICE}, reads))
        try:
            assert await cache.caller("h", alice) == ALICE  # looked up by the request itself
            await asyncio.sleep(1.0)  # over three times the TTL, with no request meanwhile
            assert cache.held("h") == ALICE  # the next request is served from memory
            assert cache.lookups == 1  # no request had to look it up again
            assert len(reads) >= 3  # read again every third of the TTL ...
            assert all(r == ["h"] for r in reads)  # ... the keys in use in one query
        finally:
            await cache.stop()

    async def test_a_key_the_database_no_longer_has_is_dropped(self) -> None:
        cache, reads = KeyCache(ttl=60), Reads()
        await cache.caller("h", alice)
        await cache.caller("g", alice)
        await cache.refresh(self.reader({"g": ALICE}, reads))  # h was revoked elsewhere
        assert reads == [["h", "g"]]
        assert cache.held("h") is None
        assert cache.held("g") == ALICE

    async def test_keys_unused_for_a_while_are_left_to_run_out(self) -> None:
        cache, reads = KeyCache(ttl=0.2), Reads()
        cache.keep_fresh_for = 0.1
        await cache.caller("h", alice)
        await asyncio.sleep(0.12)
        await cache.refresh(self.reader({"h": ALICE}, reads))
        assert reads == []  # not read again ...
        await asyncio.sleep(0.1)
        assert cache.held("h") is None  # ... so it ran out in its time

    async def test_a_refresh_that_began_before_a_revocation_here_keeps_nothing(self) -> None:
        cache = KeyCache(ttl=0.2)
        await cache.caller("h", alice)
        answer: asyncio.Future[dict[str, Caller]] = asyncio.get_running_loop().create_future()

        async def read_many(hashes: list[str]) -> dict[str, Caller]:
            return await answer

        refresh = asyncio.create_task(cache.refresh(read_many))
        await settle()
        cache.forget("h")  # revoked here while the refresh read the database
        answer.set_result({"h": ALICE})  # the read predates the revocation: valid, it says
        await refresh
        assert cache.held("h") is None

    async def test_the_app_keeps_a_key_in_use_fresh(self, api: Api, app: FastAPI) -> None:
        cache = key_cache(app.state)
        cache.ttl = 0.3
        assert await status(api, "alice") == 200
        refreshes = cache.refreshes
        await asyncio.sleep(1.0)  # over three times the TTL, with no request meanwhile
        assert cache.held(hash_key(api.keys["alice"])) is not None  # the next request is served
        assert cache.refreshes > refreshes  # from memory: it was read again in the background
        assert await status(api, "alice") == 200


async def alice() -> Caller | None:
    return ALICE
