"""Per-key and per-address limits: the bucket arithmetic on a fake clock, and what a client of the
HTTP API sees when it goes over (429, ``Retry-After``, nothing done) on the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.access import dependencies
from service.access.dependencies import SESSION_LIMIT_RETRY_AFTER
from service.kit.ratelimit import Limits, RateLimit, SessionLimit, retry_after_seconds
from service.settings import Settings
from tests.helpers import Api, assert_problem, auth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limit_app(app: FastAPI, **settings: Any) -> Settings:
    """Give ``app`` fresh limits made from its settings changed by ``settings`` (the keys the
    fixtures made have not been counted against them)."""
    current: Settings = app.state.settings
    changed = current.model_copy(update=settings)
    live = app.state.live
    app.state.limits = Limits.of(changed, lambda sid: live.get(sid) is not None)
    return changed


def assert_rate_limited(response: httpx.Response, slug: str = "rate-limited") -> int:
    """A 429 problem with ``Retry-After`` in whole seconds (also in the body); returns them."""
    body = assert_problem(response, 429, slug)
    seconds = int(response.headers["retry-after"])
    assert seconds >= 1
    assert body["retry_after"] == seconds
    assert body["request_id"] == response.headers["x-request-id"]
    return seconds


class TestRateLimit:
    def test_a_burst_passes_then_one_request_per_interval(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=2, burst=3, clock=clock)
        assert [limit.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert limit.take("k") == pytest.approx(0.5)
        clock.now += 0.5
        assert limit.take("k") == 0.0
        assert limit.take("k") == pytest.approx(0.5)

    def test_a_refused_request_counts_nothing(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=1, burst=1, clock=clock)
        assert limit.take("k") == 0.0
        for _ in range(100):  # hammering while refused does not push the wait further out
            assert limit.take("k") == pytest.approx(1.0)
        clock.now += 1.0
        assert limit.take("k") == 0.0
        assert limit.refused == 100

    def test_a_token_given_back_is_as_if_never_taken(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=1, burst=2, clock=clock)
        assert [limit.take("k"), limit.take("k")] == [0, 0]
        assert limit.take("k") > 0
        limit.give_back("k")
        assert limit.take("k") == 0
        limit.give_back("k")
        limit.give_back("k")
        assert len(limit) == 0  # back to a key never seen: forgotten

    def test_a_full_bucket_refills_to_the_burst_and_no_further(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=10, burst=5, clock=clock)
        for _ in range(5):
            limit.take("k")
        clock.now += 3600  # an hour idle buys a burst, not 36000 requests
        assert sum(limit.take("k") == 0.0 for _ in range(10)) == 5

    def test_keys_are_counted_apart(self) -> None:
        limit = RateLimit(per_second=1, burst=1, clock=Clock())
        assert limit.take("a") == 0.0
        assert limit.take("a") > 0
        assert limit.take("b") == 0.0

    def test_intervals_that_do_not_add_up_exactly_refuse_nothing_on_time(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=10, burst=10, clock=clock)  # 0.1 s is no exact float
        assert all(limit.take("k") == 0.0 for _ in range(10))
        clock.now += 0.1
        assert limit.take("k") == 0.0

    def test_zero_per_second_is_no_limit(self) -> None:
        limit = RateLimit(per_second=0, burst=1, clock=Clock())
        assert not limit.enabled
        assert all(limit.take("k") == 0.0 for _ in range(10_000))
        assert len(limit) == 0

    def test_idle_keys_are_forgotten(self) -> None:
        clock = Clock()
        limit = RateLimit(per_second=1, burst=1, clock=clock)
        for n in range(1000):
            limit.take(f"old-{n}")
        clock.now += 1.0  # every one of them is as good as new: nothing to remember
        for n in range(2000):
            limit.take(f"new-{n}")
        assert len(limit) < 2100

    def test_memory_is_bounded_even_when_every_key_is_busy(self) -> None:
        limit = RateLimit(per_second=1, burst=1, clock=Clock(), max_keys=5000)
        for n in range(50_000):
            limit.take(f"address-{n}")
        assert len(limit) <= 5000

    @pytest.mark.parametrize(
        ("wait", "seconds"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.0000001, 2), (2.5, 3)]
    )
    def test_retry_after_is_whole_seconds_never_early(self, wait: float, seconds: int) -> None:
        assert retry_after_seconds(wait) == seconds


class TestSessionLimit:
    def test_reservations_count_until_they_are_left(self) -> None:
        limit = SessionLimit(2, alive=lambda sid: False)
        with limit.reserve("k"):
            with limit.reserve("k"):
                assert limit.full("k")
                assert not limit.full("other")
            assert not limit.full("k")
        assert limit.count("k") == 0
        assert len(limit) == 0

    def test_a_kept_session_counts_while_it_is_alive(self) -> None:
        alive = {"s1"}
        limit = SessionLimit(1, alive=alive.__contains__)
        with limit.reserve("k") as reservation:
            reservation.keep("s1")
        assert limit.full("k")
        alive.clear()  # the session ended
        assert not limit.full("k")
        assert len(limit) == 0

    def test_a_reservation_left_by_an_error_is_released(self) -> None:
        limit = SessionLimit(1, alive=lambda sid: True)
        with pytest.raises(RuntimeError), limit.reserve("k"):
            raise RuntimeError("the handshake failed")
        assert limit.count("k") == 0

    def test_zero_is_no_limit(self) -> None:
        limit = SessionLimit(0, alive=lambda sid: True)
        reservations = [limit.reserve("k") for _ in range(100)]
        assert not limit.full("k")
        for reservation in reservations:
            reservation.release()
            reservation.release()  # twice is once
        assert limit.count("k") == 0

    def test_ended_sessions_of_keys_never_seen_again_are_pruned(self) -> None:
        limit = SessionLimit(10, alive=lambda sid: False)
        for n in range(5000):
            with limit.reserve(f"key-{n}") as reservation:
                reservation.keep(f"s{n}")
        assert len(limit) < 1100


class TestRequestsPerKey:
    async def test_a_key_over_its_limit_gets_429_and_nothing_is_done(
        self, api: Api, app: FastAPI
    ) -> None:
        limit_app(app, rate_limit_per_second=0.5, rate_limit_burst=3)
        for _ in range(3):  # the burst; each request counts once, role checks and all
            response = await api.http.get("/v1/audit", headers=api.as_("audrey"))
            assert response.status_code == 200, response.text
        for _ in range(3):
            response = await api.http.get("/v1/phrases", headers=api.as_("alice"))
            assert response.status_code == 200, response.text

        refused = await api.http.post(
            "/v1/phrases",
            json={"key": "limited", "title": "T", "category": "other", "default_locale": "en"},
            headers=api.as_("alice"),
        )

        assert assert_rate_limited(refused) == 2
        assert api.keys["alice"] not in refused.text
        missing = await api.http.get("/v1/phrases/limited", headers=api.as_("carol"))
        assert missing.status_code == 404
        assert_rate_limited(await api.http.get("/v1/audit", headers=api.as_("audrey")))
        limit_app(app, rate_limit_per_second=0)  # only to look: the limit is not under test now
        events = await api.http.get(
            "/v1/audit", params={"action": "phrase.created"}, headers=api.as_("audrey")
        )
        assert events.json()["items"] == []

    async def test_another_key_is_unaffected(self, api: Api, app: FastAPI) -> None:
        limit_app(app, rate_limit_per_second=0.5, rate_limit_burst=2)
        for _ in range(2):
            await api.http.get("/v1/phrases", headers=api.as_("alice"))
        assert_rate_limited(await api.http.get("/v1/phrases", headers=api.as_("alice")))

        response = await api.http.get("/v1/phrases", headers=api.as_("carol"))

        assert response.status_code == 200, response.text

    async def test_after_retry_after_the_key_works_again(self, api: Api, app: FastAPI) -> None:
        limit_app(app, rate_limit_per_second=2, rate_limit_burst=2)
        body = {"key": "later", "title": "T", "category": "other", "default_locale": "en"}
        for _ in range(2):
            await api.http.get("/v1/phrases", headers=api.as_("alice"))
        seconds = assert_rate_limited(
            await api.http.post("/v1/phrases", json=body, headers=api.as_("alice"))
        )
        assert seconds == 1

        await asyncio.sleep(seconds)
        response = await api.http.post("/v1/phrases", json=body, headers=api.as_("alice"))

        assert response.status_code == 201, response.text

    async def test_zero_per_second_turns_the_limit_off(self, api: Api, app: FastAPI) -> None:
        limit_app(app, rate_limit_per_second=0, rate_limit_burst=1)
        for _ in range(20):
            response = await api.http.get("/v1/phrases", headers=api.as_("alice"))
            assert response.status_code == 200, response.text

    async def test_public_routes_are_not_counted(self, api: Api, app: FastAPI) -> None:
        limit_app(app, rate_limit_per_second=0.5, rate_limit_burst=1)
        for _ in range(5):
            assert (await api.http.get("/healthz", headers=api.as_("alice"))).status_code == 200
        assert (await api.http.get("/v1/phrases", headers=api.as_("alice"))).status_code == 200


def test_the_defaults_leave_room_for_a_busy_agent() -> None:
    defaults = Settings()
    assert defaults.rate_limit_per_second >= 50
    assert defaults.rate_limit_burst >= 100
    assert defaults.session_rate_limit_per_second >= 10
    assert defaults.session_limit_per_key >= 500
    assert defaults.auth_failure_limit_per_second > 0  # guessing is slowed out of the box


@pytest.fixture
async def elsewhere(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client at another address than ``api.http``'s."""
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


class TestUnknownKeysPerAddress:
    BAD = auth("cms_not-a-key-this-service-issued")

    async def test_an_address_that_guesses_keys_is_slowed(
        self, api: Api, app: FastAPI, elsewhere: httpx.AsyncClient
    ) -> None:
        limit_app(app, auth_failure_limit_per_second=0.5, auth_failure_limit_burst=3)
        in_use = await api.http.get("/v1/phrases", headers=api.as_("alice"))
        assert in_use.status_code == 200  # alice's key has just authenticated here
        for _ in range(3):
            assert_problem(await api.http.get("/v1/phrases", headers=self.BAD), 401)

        body = assert_problem(await api.http.get("/v1/phrases", headers=self.BAD), 429)
        assert "address" in body["detail"]
        # A key nobody used lately is refused too, valid or not: answers tell a guesser nothing.
        assert_rate_limited(await api.http.get("/v1/phrases", headers=api.as_("carol")))
        # What has just authenticated goes on working; a key-less request is still told how.
        assert (await api.http.get("/v1/phrases", headers=api.as_("alice"))).status_code == 200
        assert_problem(await api.http.get("/v1/phrases"), 401, "unauthenticated")
        # Another address is not held back.
        assert_problem(await elsewhere.get("/v1/phrases", headers=self.BAD), 401)
        assert (await elsewhere.get("/v1/phrases", headers=api.as_("carol"))).status_code == 200

    async def test_guesses_sent_all_at_once_are_held_to_the_burst(
        self, api: Api, app: FastAPI
    ) -> None:
        """Each lookup is counted before it is made: guesses in flight together cannot all pass
        the check before the first failure is counted."""
        limit_app(app, auth_failure_limit_per_second=0.5, auth_failure_limit_burst=3)
        guesses = [auth(f"cms_guess-{n:02d}") for n in range(60)]
        answers = await asyncio.gather(*(api.http.get("/v1/phrases", headers=g) for g in guesses))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [401] * 3 + [429] * 57

    async def test_a_lookup_that_fails_does_not_count_against_the_address(
        self, api: Api, app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """While the database is away, valid keys that need a lookup fail (503), and must not
        use up the address's allowance for unknown keys, or they would get 429 once it is
        back."""
        limit_app(app, auth_failure_limit_per_second=0.01, auth_failure_limit_burst=1)

        async def unreachable(*_: object) -> None:
            raise ConnectionRefusedError("the database is away")

        with monkeypatch.context() as patched:
            patched.setattr(dependencies, "caller_of_hash", unreachable)
            for _ in range(3):
                response = await api.http.get("/v1/phrases", headers=api.as_("carol"))
                assert response.status_code >= 500
        assert (await api.http.get("/v1/phrases", headers=api.as_("carol"))).status_code == 200

    async def test_valid_keys_do_not_count_as_failures(self, api: Api, app: FastAPI) -> None:
        limit_app(app, auth_failure_limit_per_second=0.5, auth_failure_limit_burst=1)
        for who in ("alice", "carol", "bob", "dave", "eve", "audrey", "agent-1"):
            response = await api.http.get("/v1/phrases", headers=api.as_(who))
            assert response.status_code == 200, response.text

    async def test_after_retry_after_a_guess_is_answered_again(
        self, api: Api, app: FastAPI
    ) -> None:
        limit_app(app, auth_failure_limit_per_second=2, auth_failure_limit_burst=1)
        assert_problem(await api.http.get("/v1/phrases", headers=self.BAD), 401)
        seconds = assert_rate_limited(await api.http.get("/v1/phrases", headers=self.BAD))

        await asyncio.sleep(seconds)

        assert_problem(await api.http.get("/v1/phrases", headers=self.BAD), 401)


class TestAttachedRegistration:
    BODY: dict[str, Any] = {"greeting": "none"}

    async def test_sessions_opened_too_fast_are_refused_before_any_is_made(
        self, api: Api, app: FastAPI
    ) -> None:
        limit_app(app, session_rate_limit_per_second=0.5, session_rate_limit_burst=2)
        for _ in range(2):
            made = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("agent-1"))
            assert made.status_code == 201, made.text

        refused = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("agent-1"))

        assert assert_rate_limited(refused) == 2
        assert "sessions a second" in refused.json()["detail"]
        listed = await api.http.get("/v1/sessions", headers=api.as_("agent-1"))
        assert len(listed.json()["items"]) == 2

    async def test_a_key_at_its_most_live_sessions_is_refused(self, api: Api, app: FastAPI) -> None:
        limit_app(app, session_limit_per_key=1)
        made = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("agent-1"))
        assert made.status_code == 201, made.text

        refused = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("agent-1"))

        assert assert_rate_limited(refused, "session-limit") == SESSION_LIMIT_RETRY_AFTER
        other = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("admin"))
        assert other.status_code == 201, other.text  # another key holds its own sessions
        # The held session ends (its connector never came): the key may open another.
        engine = app.state.live.get(made.json()["id"])
        await engine.transport.end("the test ended it")
        again = await api.http.post("/v1/sessions", json=self.BODY, headers=api.as_("agent-1"))
        assert again.status_code == 201, again.text
