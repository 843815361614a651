"""Helpers the tests share: keys for each role, and the few steps most tests start with."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "test-admin-key-0123456789abcdef"
PROBLEM_JSON = "application/problem+json"

# principal -> roles. Two of each writing role, so four-eyes tests have a second person at hand.
PEOPLE: dict[str, list[str]] = {
    "alice": ["editor"],
    "carol": ["editor"],
    "bob": ["approver"],
    "dave": ["approver"],
    "eve": ["editor", "approver"],
    "agent-1": ["agent"],
    "audrey": ["auditor"],
}


def cli_environment(database_url: str | None, **extra: str) -> dict[str, str]:
    """The caller's environment without any COMPLIANCE_* setting but the ones given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_")}
    if database_url is not None:
        env["COMPLIANCE_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` as an operator runs it: a process of its own."""
    return subprocess.run(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def run_cli_async(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, cwd=cwd)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (and type slug, if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    if slug is not None:
        assert body["type"] == f"/problems/{slug}", body
    return body


@dataclass
class Api:
    http: httpx.AsyncClient
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    async def with_keys(cls, http: httpx.AsyncClient) -> Api:
        api = cls(http, {"admin": ADMIN_KEY})
        for principal, roles in PEOPLE.items():
            api.keys[principal] = await api.new_key(principal, roles)
        return api

    async def new_key(self, principal: str, roles: list[str]) -> str:
        response = await self.http.post(
            "/v1/api-keys", json={"principal": principal, "roles": roles}, headers=self.as_("admin")
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def as_(self, who: str) -> dict[str, str]:
        return auth(self.keys[who])

    async def create_phrase(self, key: str = "recording", **fields: Any) -> dict[str, Any]:
        body = {
            "key": key,
            "title": "Call recording disclosure",
            "category": "disclosure",
            "default_locale": "en-US",
            **fields,
        }
        response = await self.http.post("/v1/phrases", json=body, headers=self.as_("alice"))
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def create_version(
        self, key: str = "recording", texts: dict[str, str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"texts": texts or {"en-US": "This call is recorded."}, **fields}
        response = await self.http.post(
            f"/v1/phrases/{key}/versions", json=body, headers=self.as_("alice")
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def transition(
        self, key: str, number: int, action: str, who: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        return await self.http.post(
            f"/v1/phrases/{key}/versions/{number}/{action}", json=body, headers=self.as_(who)
        )

    async def approved_version(
        self, key: str = "recording", texts: dict[str, str] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Draft by alice, submitted by alice, approved by bob."""
        version = await self.create_version(key, texts, **fields)
        number = version["number"]
        assert (await self.transition(key, number, "submit", "alice")).status_code == 200
        response = await self.transition(key, number, "approve", "bob")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert result["status"] == "approved"
        return result
