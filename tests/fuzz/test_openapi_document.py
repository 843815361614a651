"""The OpenAPI document names the problem answers of every operation (service/kit/openapi.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.kit.openapi import OPERATION_ANSWERS
from tests.access.policy import ANY_ROLE, Endpoint, allowed_roles, app_for_collection
from tests.helpers import PROBLEM_JSON

DOCUMENT = app_for_collection().openapi()
V1 = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    if path.startswith("/v1/")
    for method, operation in operations.items()
]


def _statuses(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"]}


class TestProblemAnswers:
    def test_fastapis_own_422_shape_is_gone(self) -> None:
        assert "HTTPValidationError" not in DOCUMENT["components"]["schemas"]
        assert "ValidationError" not in DOCUMENT["components"]["schemas"]

    @pytest.mark.parametrize(
        ("method", "path", "operation"), V1, ids=[f"{m} {p}" for m, p, _ in V1]
    )
    def test_every_error_is_a_problem(
        self, method: str, path: str, operation: dict[str, Any]
    ) -> None:
        for status, answer in operation["responses"].items():
            if int(status) < 400:
                continue
            assert list(answer["content"]) == [PROBLEM_JSON]
            schema = "ValidationProblem" if status == "422" else "Problem"
            assert answer["content"][PROBLEM_JSON]["schema"] == {
                "$ref": f"#/components/schemas/{schema}"
            }

    @pytest.mark.parametrize(
        ("method", "path", "operation"), V1, ids=[f"{m} {p}" for m, p, _ in V1]
    )
    def test_what_every_authenticated_operation_can_answer(
        self, method: str, path: str, operation: dict[str, Any]
    ) -> None:
        assert {401, 422, 429, 503} <= _statuses(operation)
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        assert operation["responses"]["429"]["headers"]["Retry-After"]["required"]
        assert operation["responses"]["503"]["headers"]["Retry-After"]["required"]

    @pytest.mark.parametrize(
        ("method", "path", "operation"), V1, ids=[f"{m} {p}" for m, p, _ in V1]
    )
    def test_403_exactly_where_a_role_is_checked(
        self, method: str, path: str, operation: dict[str, Any]
    ) -> None:
        """The document's 403s agree with the access policy written down in tests/access."""
        checks_role = allowed_roles(Endpoint(method, path)) != ANY_ROLE
        by_rule = 403 in OPERATION_ANSWERS.get(operation["operationId"], {})
        assert (403 in _statuses(operation)) == (checks_role or by_rule)

    @pytest.mark.parametrize(
        ("method", "path", "operation"), V1, ids=[f"{m} {p}" for m, p, _ in V1]
    )
    def test_shape_implies_404_413_412(
        self, method: str, path: str, operation: dict[str, Any]
    ) -> None:
        parameters = operation.get("parameters", [])
        statuses = _statuses(operation)
        assert (404 in statuses) == (
            any(p["in"] == "path" for p in parameters)
            or 404 in OPERATION_ANSWERS.get(operation["operationId"], {})
        )
        assert (413 in statuses) == ("requestBody" in operation)
        assert (412 in statuses) == any(p["name"].lower() == "if-match" for p in parameters)

    def test_if_match_is_required_where_its_absence_is_428(self) -> None:
        operation = DOCUMENT["paths"]["/v1/phrases/{key}/versions/{number}"]["patch"]
        (if_match,) = [p for p in operation["parameters"] if p["name"].lower() == "if-match"]
        assert if_match["required"] is True
        assert 428 in _statuses(operation)
        submit = DOCUMENT["paths"]["/v1/phrases/{key}/versions/{number}/submit"]["post"]
        (optional,) = [p for p in submit["parameters"] if p["name"].lower() == "if-match"]
        assert not optional.get("required", False)

    def test_every_operation_the_table_names_exists(self) -> None:
        operation_ids = {
            operation["operationId"]
            for operations in DOCUMENT["paths"].values()
            for operation in operations.values()
        }
        assert set(OPERATION_ANSWERS) <= operation_ids

    def test_public_routes_are_not_secured(self) -> None:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert "security" not in DOCUMENT["paths"][path]["get"]


async def test_the_app_serves_this_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT
