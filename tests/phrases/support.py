"""Steps the phrase tests share, on top of tests.helpers.Api."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from service.settings import Settings
from tests.helpers import Api, assert_problem

MakeApi = Callable[[Settings], Awaitable[Api]]


def now() -> datetime:
    return datetime.now(UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def version_url(key: str, number: int) -> str:
    return f"/v1/phrases/{key}/versions/{number}"


async def get_version(api: Api, key: str, number: int, who: str = "alice") -> httpx.Response:
    response = await api.http.get(version_url(key, number), headers=api.as_(who))
    assert response.status_code == 200, response.text
    return response


async def etag(api: Api, key: str, number: int) -> str:
    return (await get_version(api, key, number)).headers["ETag"]


async def patch(
    api: Api,
    key: str,
    number: int,
    body: dict[str, Any],
    *,
    who: str = "alice",
    if_match: str | None = None,
) -> httpx.Response:
    headers = api.as_(who)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await api.http.patch(version_url(key, number), json=body, headers=headers)


async def patch_current(
    api: Api, key: str, number: int, body: dict[str, Any], *, who: str = "alice"
) -> httpx.Response:
    """PATCH with the ETag just read: what a well-behaved client does."""
    return await patch(api, key, number, body, who=who, if_match=await etag(api, key, number))


async def create_version_as(
    api: Api, who: str, key: str = "recording", texts: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    body = {"texts": texts or {"en-US": "This call is recorded."}, **fields}
    response = await api.http.post(f"/v1/phrases/{key}/versions", json=body, headers=api.as_(who))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def submitted_version(
    api: Api, key: str = "recording", texts: dict[str, str] | None = None, **fields: Any
) -> dict[str, Any]:
    """Draft by alice, submitted by alice."""
    version = await api.create_version(key, texts, **fields)
    response = await api.transition(key, version["number"], "submit", "alice")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def resolve(
    api: Api, key: str = "recording", who: str = "agent-1", **params: Any
) -> httpx.Response:
    return await api.http.get(f"/v1/phrases/{key}/resolve", params=params, headers=api.as_(who))


async def list_keys(api: Api, **params: Any) -> list[str]:
    response = await api.http.get("/v1/phrases", params=params, headers=api.as_("agent-1"))
    assert response.status_code == 200, response.text
    return [item["key"] for item in response.json()["items"]]


def assert_refused(
    response: httpx.Response, status: int, slug: str | None, case: object
) -> dict[str, Any]:
    """assert_problem, naming the case when one of several in a loop fails."""
    assert response.status_code == status, f"{case!r}: {response.status_code} {response.text}"
    return assert_problem(response, status, slug)
