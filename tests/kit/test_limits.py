"""Request bodies over COMPLIANCE_MAX_BODY_BYTES are refused with 413, however they arrive."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from tests.helpers import Api, assert_problem
from tests.kit.conftest import SMALL_LIMIT


def phrase_of_size(size: int, key: str = "padded") -> bytes:
    """A valid phrase-create body of exactly ``size`` bytes (the description pads it)."""
    body: dict[str, Any] = {
        "key": key,
        "title": "Padded",
        "category": "other",
        "default_locale": "en",
        "description": "",
    }
    padding = size - len(json.dumps(body).encode())
    assert padding >= 0
    body["description"] = "x" * padding
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


async def in_chunks(data: bytes, size: int = 256) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def phrase_keys(api: Api) -> list[str]:
    response = await api.http.get("/v1/phrases", headers=api.as_("alice"))
    return [p["key"] for p in response.json()["items"]]


def assert_too_large(response: httpx.Response) -> None:
    body = assert_problem(response, 413, "payload-too-large")
    assert str(SMALL_LIMIT) in body["detail"]


class TestDeclaredLength:
    async def test_body_over_the_limit_is_413_and_writes_nothing(self, small_api: Api) -> None:
        response = await small_api.http.post(
            "/v1/phrases",
            content=phrase_of_size(SMALL_LIMIT + 1),
            headers={**small_api.as_("alice"), "content-type": "application/json"},
        )

        assert_too_large(response)
        assert await phrase_keys(small_api) == []

    async def test_body_of_exactly_the_limit_is_accepted(self, small_api: Api) -> None:
        response = await small_api.http.post(
            "/v1/phrases",
            content=phrase_of_size(SMALL_LIMIT),
            headers={**small_api.as_("alice"), "content-type": "application/json"},
        )

        assert response.status_code == 201, response.text

    async def test_oversized_body_is_413_even_without_a_key(self, small_api: Api) -> None:
        response = await small_api.http.post(
            "/v1/phrases",
            content=b"x" * (SMALL_LIMIT * 4),
            headers={"content-type": "application/json"},
        )

        assert_too_large(response)


class TestStreamedBody:
    async def test_streamed_body_over_the_limit_is_413_and_writes_nothing(
        self, small_api: Api
    ) -> None:
        request = small_api.http.build_request(
            "POST",
            "/v1/phrases",
            content=in_chunks(phrase_of_size(SMALL_LIMIT + 1)),
            headers={**small_api.as_("alice"), "content-type": "application/json"},
        )
        assert "content-length" not in request.headers

        response = await small_api.http.send(request)

        assert_too_large(response)
        assert await phrase_keys(small_api) == []

    async def test_streamed_body_within_the_limit_is_accepted(self, small_api: Api) -> None:
        response = await small_api.http.post(
            "/v1/phrases",
            content=in_chunks(phrase_of_size(SMALL_LIMIT)),
            headers={**small_api.as_("alice"), "content-type": "application/json"},
        )

        assert response.status_code == 201, response.text

    async def test_streamed_import_over_the_limit_is_413_and_imports_nothing(
        self, small_api: Api
    ) -> None:
        document = {
            "phrases": [
                {
                    "key": f"imported-{n}",
                    "title": "Imported",
                    "category": "other",
                    "default_locale": "en",
                }
                for n in range(20)
            ]
        }
        raw = json.dumps(document).encode()
        assert len(raw) > SMALL_LIMIT

        response = await small_api.http.post(
            "/v1/phrases/import",
            content=in_chunks(raw),
            headers={**small_api.as_("alice"), "content-type": "application/json"},
        )

        assert_too_large(response)
        assert await phrase_keys(small_api) == []


async def call_asgi(app: FastAPI, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """Send one request straight to the ASGI app, as a client that lies about its length."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/phrases",
        "raw_path": b"/v1/phrases",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    chunks = [body[i : i + 256] for i in range(0, len(body), 256)]
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    status: int = start["status"]
    return status


@pytest.mark.parametrize("declared", [b"10", b"1024", b"-1", b"lots"])
async def test_body_longer_than_its_declared_length_is_still_cut_off(
    small_app: FastAPI, declared: bytes
) -> None:
    status = await call_asgi(
        small_app,
        [(b"content-type", b"application/json"), (b"content-length", declared)],
        phrase_of_size(SMALL_LIMIT * 3),
    )

    assert status == 413
