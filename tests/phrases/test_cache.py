"""The library cache behind resolve and list: it never answers from a state older than the
request, in the app that made a change or in another one on the same database (a replica), it
follows effective windows without any change being made, and it does cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from service.kit.db import create_engine
from service.phrases.cache import GenerationCheck, LibraryCache
from service.phrases.generation import NotNow
from tests.helpers import Api, assert_problem
from tests.phrases.conftest import Replica
from tests.phrases.support import (
    create_version_as,
    days,
    iso,
    now,
    resolve,
    submitted_version,
    when,
)

# How the replica reads the generation: its default (synchronously from the file on SQLite, on a
# connection of its own on PostgreSQL), through a pooled session, and with a fast read that always
# fails (so that it falls back to the session).
CHECKS = ["default", "through-a-session", "fast-read-failing"]


def cannot() -> int | None:
    raise NotNow("busy")


async def cannot_either() -> int | None:
    raise NotNow("connection lost")


@pytest.fixture(params=CHECKS)
def other(request: pytest.FixtureRequest, replica: Replica) -> Replica:
    state = replica.app.state
    if request.param == "through-a-session":
        state.library_cache = LibraryCache(state.read_sessionmaker)
    elif request.param == "fast-read-failing":
        state.library_cache = LibraryCache(
            state.read_sessionmaker, quick=cannot, direct=cannot_either
        )
    return replica


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    own = create_engine(database_url)
    yield own
    await own.dispose()


async def generation(engine: AsyncEngine) -> int | None:
    async with engine.connect() as connection:
        value = await connection.scalar(
            sa.text("SELECT value FROM phrase_library_generation WHERE id = 1")
        )
    return None if value is None else int(value)


async def text_of(api: Api, key: str = "recording", **params: Any) -> str:
    response = await resolve(api, key, **params)
    assert response.status_code == 200, response.text
    text: str = response.json()["text"]
    return text


async def listed(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.http.get("/v1/phrases", params=params, headers=api.as_("agent-1"))
    assert response.status_code == 200, response.text
    return {item["key"]: item for item in response.json()["items"]}


def loads(app: FastAPI) -> int:
    cache: LibraryCache = app.state.library_cache
    return cache.loads


class TestAcrossReplicas:
    async def test_a_retirement_in_one_replica_is_never_served_by_the_other(
        self, api: Api, other: Replica
    ) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Old."})
        await api.approved_version(texts={"en-US": "New."})
        for _ in range(3):  # the other replica holds version 2 now
            assert await text_of(other.api) == "New."

        retired = await api.transition("recording", 2, "retire", "bob", {"reason": "wrong"})
        assert retired.status_code == 200, retired.text
        assert await text_of(other.api) == "Old."  # at once: no wait, no retry

        retired = await api.transition("recording", 1, "retire", "bob", {"reason": "gone"})
        assert retired.status_code == 200, retired.text
        assert_problem(await resolve(other.api), 404, "no-version-in-force")
        assert_problem(await resolve(other.api, version=1), 404, "no-version-in-force")

    async def test_an_approval_in_one_replica_supersedes_at_once_in_the_other(
        self, api: Api, other: Replica
    ) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "First.", "fr-FR": "Premier."})
        assert await text_of(other.api, locale="fr-CA") == "Premier."
        await submitted_version(api, texts={"en-US": "Second.", "fr-FR": "Deuxième."})
        assert await text_of(other.api, locale="fr-CA") == "Premier."  # in review is not heard

        approved = await api.transition("recording", 2, "approve", "bob")
        assert approved.status_code == 200, approved.text
        assert await text_of(other.api, locale="fr-CA") == "Deuxième."
        assert await text_of(other.api, version=1) == "First."  # pinned: still in force

    async def test_a_phrase_created_in_one_replica_resolves_at_once_in_the_other(
        self, api: Api, other: Replica
    ) -> None:
        assert_problem(await resolve(other.api), 404, "phrase-not-found")
        await api.create_phrase()
        assert_problem(await resolve(other.api), 404, "no-version-in-force")
        await api.approved_version(texts={"en-US": "Here now."})
        assert await text_of(other.api) == "Here now."

    async def test_list_pages_follow_changes_made_in_the_other_replica(
        self, api: Api, other: Replica
    ) -> None:
        await api.create_phrase("alpha")
        assert list(await listed(other.api)) == ["alpha"]
        await api.create_phrase("beta", tags=["legal"])
        assert list(await listed(other.api)) == ["alpha", "beta"]
        assert list(await listed(other.api, tag="legal")) == ["beta"]

        await api.approved_version("alpha")
        assert (await listed(other.api))["alpha"]["latest_version"] == {
            "number": 1,
            "status": "approved",
        }
        retired = await api.transition("alpha", 1, "retire", "bob", {"reason": "gone"})
        assert retired.status_code == 200, retired.text
        assert (await listed(other.api))["alpha"]["latest_version"]["status"] == "retired"
        assert list(await listed(other.api, status="retired")) == ["alpha"]

        renamed = await api.http.patch(
            "/v1/phrases/beta", json={"title": "Renamed", "tags": []}, headers=api.as_("carol")
        )
        assert renamed.status_code == 200, renamed.text
        assert (await listed(other.api))["beta"]["title"] == "Renamed"
        assert await listed(other.api, tag="legal") == {}

    async def test_concurrent_resolves_around_a_retirement_never_go_back(
        self, api: Api, other: Replica
    ) -> None:
        """Once a replica has answered with the state after a retirement, no later request
        (on either replica) answers with the state before it."""
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Old."})
        await api.approved_version(texts={"en-US": "New."})
        retirement_answered = asyncio.Event()
        seen: list[tuple[bool, str]] = []  # (asked after the retirement was answered, text)

        async def reader(target: Api) -> None:
            asked_after, afterwards = False, 0
            while afterwards < 10:  # reads all along, and ten more once the retirement is in
                asked_after = retirement_answered.is_set()
                seen.append((asked_after, await text_of(target)))
                afterwards += asked_after
                await asyncio.sleep(0)

        readers = [asyncio.create_task(reader(a)) for a in (api, other.api, other.api)]
        await asyncio.sleep(0.01)
        retired = await api.transition("recording", 2, "retire", "bob", {"reason": "wrong"})
        assert retired.status_code == 200, retired.text
        retirement_answered.set()
        await asyncio.gather(*readers)
        after = [text for asked_after, text in seen if asked_after]
        assert len(after) == 30
        assert len(seen) > len(after), "no read overlapped the retirement"
        assert set(after) == {"Old."}, seen
        assert await text_of(other.api) == "Old."


class TestEffectiveWindows:
    async def test_a_window_that_opens_and_closes_is_followed_from_the_cache(
        self, api: Api, app: FastAPI
    ) -> None:
        """Nothing changes in the library while a version's window opens and closes: the
        cached phrase is not read again, and yet each answer is the one in force."""
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Standing."})
        opens = now() + days(2.0 / 86400)  # in 2 s
        closes = opens + days(1.0 / 86400)
        await api.approved_version(
            texts={"en-US": "Campaign."}, effective_from=iso(opens), effective_until=iso(closes)
        )
        assert await text_of(api) == "Standing."
        assert now() < opens, "the machine was too slow to see the window before it opened"
        read = loads(app)

        await asyncio.sleep((opens - now()).total_seconds() + 0.05)
        response = await resolve(api)
        assert (response.json()["text"], when(response.json()["effective_until"])) == (
            "Campaign.",
            closes,
        )
        await asyncio.sleep((closes - now()).total_seconds() + 0.05)
        assert await text_of(api) == "Standing."
        assert loads(app) == read


class TestGeneration:
    async def test_every_change_to_the_library_raises_the_generation(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        values = [await generation(engine)]

        async def raised(response: Any) -> None:
            assert response.status_code in (200, 201), response.text
            values.append(await generation(engine))
            assert values[-1] is not None
            assert values[-2] is not None
            assert values[-1] > values[-2], values

        await raised(
            await api.http.post(
                "/v1/phrases",
                json={"key": "recording", "title": "T", "category": "disclosure",
                      "default_locale": "en-US"},
                headers=api.as_("alice"),
            )
        )  # fmt: skip
        await raised(
            await api.http.patch(
                "/v1/phrases/recording", json={"title": "New"}, headers=api.as_("alice")
            )
        )
        body = {"texts": {"en-US": "One."}}
        await raised(
            await api.http.post(
                "/v1/phrases/recording/versions", json=body, headers=api.as_("alice")
            )
        )
        etag = (
            await api.http.get("/v1/phrases/recording/versions/1", headers=api.as_("alice"))
        ).headers["ETag"]
        await raised(
            await api.http.patch(
                "/v1/phrases/recording/versions/1",
                json={"texts": {"en-US": "Uno."}},
                headers={**api.as_("alice"), "If-Match": etag},
            )
        )
        await raised(await api.transition("recording", 1, "submit", "alice"))
        await raised(await api.transition("recording", 1, "approve", "bob"))
        await raised(await api.transition("recording", 1, "retire", "bob", {"reason": "r"}))
        await submitted_version(api, texts={"en-US": "Two."})
        values.append(await generation(engine))
        await raised(await api.transition("recording", 2, "reject", "bob", {"reason": "r"}))
        document = b'{"format": "compliance-phrases/1", "phrases": [{"key": "imported", ' + (
            b'"title": "I", "category": "other", "default_locale": "en-US", "versions": '
            b'[{"texts": {"en-US": "Imported."}}]}]}'
        )
        headers = {**api.as_("carol"), "Content-Type": "application/json"}
        await raised(await api.http.post("/v1/phrases/import", content=document, headers=headers))

    async def test_reads_and_refused_changes_leave_it_alone(
        self, api: Api, engine: AsyncEngine
    ) -> None:
        await api.create_phrase()
        await create_version_as(api, "eve")
        assert (await api.transition("recording", 1, "submit", "eve")).status_code == 200
        before = await generation(engine)
        refused = await api.transition("recording", 1, "approve", "eve")  # her own draft
        assert_problem(refused, 403, "four-eyes")
        for url in ("/v1/phrases", "/v1/phrases/recording", "/v1/phrases/recording/versions"):
            assert (await api.http.get(url, headers=api.as_("bob"))).status_code == 200
        assert_problem(await resolve(api), 404, "no-version-in-force")
        created = await api.http.post(
            "/v1/api-keys", json={"principal": "zed", "roles": ["agent"]}, headers=api.as_("admin")
        )
        assert created.status_code == 201  # not the library
        assert await generation(engine) == before

    async def test_without_its_row_nothing_is_cached_and_answers_stay_right(
        self, api: Api, other: Replica, engine: AsyncEngine
    ) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "Old."})
        await api.approved_version(texts={"en-US": "New."})
        async with engine.begin() as connection:
            await connection.execute(sa.text("DELETE FROM phrase_library_generation"))
        assert await text_of(other.api) == "New."
        read = loads(other.app)
        assert await text_of(other.api) == "New."
        assert loads(other.app) == read + 1  # read again: nothing was kept
        retired = await api.transition("recording", 2, "retire", "bob", {"reason": "wrong"})
        assert retired.status_code == 200, retired.text
        assert await text_of(other.api) == "Old."


class TestCaching:
    async def test_resolves_and_lists_read_the_library_once_until_it_changes(
        self, api: Api, app: FastAPI
    ) -> None:
        await api.create_phrase()
        await api.approved_version(texts={"en-US": "One.", "fr-FR": "Un."})
        await asyncio.gather(*(text_of(api, locale=loc) for loc in ("en-US", "fr-FR") * 10))
        await asyncio.gather(*(listed(api) for _ in range(10)))
        assert loads(app) == 2  # one phrase, one page: concurrent misses share a read
        for locale in ("en-US", "fr-CA", "de-DE"):
            await resolve(api, locale=locale)
        await listed(api)
        assert loads(app) == 2

        await api.approved_version(texts={"en-US": "Two.", "fr-FR": "Deux."})
        assert await text_of(api, locale="fr-CA") == "Deux."
        assert await text_of(api) == "Two."
        assert (await listed(api))["recording"]["latest_version"]["number"] == 2
        assert loads(app) == 4

    async def test_cached_answers_are_the_ones_computed_without_the_cache(
        self, api: Api, other: Replica
    ) -> None:
        """The other replica answers once cold (read from the database) and once warm."""
        await api.create_phrase(cross_language_fallback=True)
        await api.approved_version(
            texts={"en-US": "Hi {{name}}.", "de-DE": "Hallo {{name}}."},
            variables=[{"name": "name", "max_length": 20}],
            effective_from=iso(now() - days(1)),
        )
        await api.approved_version(texts={"en-US": "Later."}, effective_from=iso(now() + days(5)))
        cases: list[dict[str, Any]] = [
            {"locale": "de-AT"},
            {"locale": "fr-FR"},
            {},
            {"version": 1, "locale": "de-DE"},
            {"at": iso(now() + days(6))},
            {"version": 2},
            {"version": 3},
        ]
        for params in cases:
            state = other.app.state
            state.library_cache = LibraryCache(state.read_sessionmaker)  # cold
            cold = await resolve(other.api, **params)
            warm = await resolve(other.api, **params)
            mine = await resolve(api, **params)
            assert answer(cold) == answer(warm) == answer(mine), params


def answer(response: Any) -> tuple[int, Any]:
    """The status and body; of a refusal, what it is (its detail names the instant)."""
    body = response.json()
    if response.status_code != 200:
        body = (body["type"], body["title"])
    return response.status_code, body


class FakeReads:
    """A generation read that answers when the test says so."""

    def __init__(self) -> None:
        self.started: list[asyncio.Future[int | None]] = []

    async def read(self) -> int | None:
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.started.append(future)
        return await future


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestGenerationCheck:
    async def test_a_call_never_gets_a_read_that_began_before_it(self) -> None:
        reads = FakeReads()
        check = GenerationCheck(reads.read)
        first = asyncio.create_task(check.current())
        await settle()
        assert len(reads.started) == 1
        later = [asyncio.create_task(check.current()) for _ in range(3)]
        await settle()
        assert len(reads.started) == 1  # they wait for the next read, not this one
        reads.started[0].set_result(5)
        assert await first == 5
        await settle()
        assert len(reads.started) == 2
        assert not any(t.done() for t in later)
        reads.started[1].set_result(6)
        assert await asyncio.gather(*later) == [6, 6, 6]
        assert (check.calls, check.reads) == (4, 2)

    async def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again(self) -> None:
        reads = FakeReads()
        check = GenerationCheck(reads.read)
        failing = [asyncio.create_task(check.current()) for _ in range(2)]
        await settle()
        reads.started[0].set_exception(ConnectionError("database gone"))
        for task in failing:
            with pytest.raises(ConnectionError):
                await task
        again = asyncio.create_task(check.current())
        await settle()
        reads.started[1].set_result(3)
        assert await again == 3

    async def test_a_caller_that_gives_up_does_not_cancel_the_read(self) -> None:
        reads = FakeReads()
        check = GenerationCheck(reads.read)
        impatient = asyncio.create_task(check.current())
        patient = asyncio.create_task(check.current())
        await settle()
        impatient.cancel()
        await settle()
        assert not reads.started[0].cancelled()
        reads.started[0].set_result(9)
        assert await patient == 9

    async def test_a_quick_read_answers_for_itself_and_falls_back_when_it_cannot(self) -> None:
        reads = FakeReads()
        answers: list[Callable[[], int]] = [lambda: 4]

        def quick() -> int:
            return answers[0]()

        check = GenerationCheck(reads.read, quick)
        assert await check.current() == 4
        assert reads.started == []

        def busy() -> int:
            raise NotNow("database is locked")

        answers[0] = busy
        slow = asyncio.create_task(check.current())
        await settle()
        reads.started[0].set_result(8)
        assert await slow == 8
