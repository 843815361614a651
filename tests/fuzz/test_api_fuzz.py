"""API fuzzing: schemathesis against the service's own OpenAPI document.

Two passes over every operation, against one real server (tests/fuzz/conftest.py):

- ``test_fuzzing``: random inputs, valid by the document and invalid, each sent with the key of
  one of the five roles or with none, and (valid ones, half the time) addressing things that exist;
- ``test_coverage``: schemathesis's systematic inputs (each parameter and body field missing, of
  the wrong type, at and past its bounds), sent by a role that may call the operation, so that
  they reach validation rather than the role check.

Every answer must be in the document (status, content type, headers, body schema); no input may
give a 5xx; every error is problem+json whose ``status`` is the response's. Then nothing written is
lost: the audit chain verifies and names every phrase there is.

Seeded and bounded: ``derandomize`` and a fixed seed; MAX_EXAMPLES random cases per operation.
Reproduce the figures (printed at the end of the run): ``.venv/bin/pytest tests/fuzz``; the same
run on PostgreSQL with ``COMPLIANCE_TEST_DATABASE_URL`` set, as for every test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import CheckFunction, GenerationMode
from schemathesis.generation.meta import CoveragePhaseData
from schemathesis.specs.openapi.checks import allow_header_conformance, negative_data_rejection

from tests.access.policy import Endpoint, allowed_roles, app_for_collection
from tests.fuzz.conftest import FIGURES, ROLES, Target
from tests.helpers import PROBLEM_JSON, auth

Case = schemathesis.Case[Any]
SEED = 20240601
# Random cases per operation in test_fuzzing (the coverage pass has its own, fixed, set). More for
# a deeper run by hand: FUZZ_EXAMPLES=500 .venv/bin/pytest tests/fuzz
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))

DOCUMENT = app_for_collection().openapi()
# Paths that /v1/phrases/{key} matches too: a 405 there rightly allows PATCH (and GET), which the
# document, where a literal path wins over a template, cannot say.
SHADOWING = frozenset({"/v1/phrases/export", "/v1/phrases/import"})


def _config(*, fuzzing: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",  # nothing replayed from earlier runs: the same run every time
                "with-security-parameters": False,  # the test sends each role's key itself
            },
            "phases": {
                "examples": {"enabled": False},  # the document has none
                "fuzzing": {"enabled": fuzzing},
                "coverage": {"enabled": not fuzzing},
                "stateful": {"enabled": False},
            },
            "checks": {
                # Valid by the document yet refused, by rules it cannot state: U+0000 anywhere,
                # a cursor the service did not issue, a locale that is no BCP 47 tag, a text
                # whose variables are not declared (422); a stale or missing If-Match (412, 428).
                "positive_data_acceptance": {
                    "expected-statuses": [
                        "2xx",
                        "401",
                        "403",
                        "404",
                        "409",
                        "412",
                        "422",
                        "428",
                        "429",
                    ]
                },
            },
        }
    )


fuzzing = schemathesis.openapi.from_dict(DOCUMENT, config=_config(fuzzing=True))
coverage = schemathesis.openapi.from_dict(DOCUMENT, config=_config(fuzzing=False))


@schemathesis.check
def problem_bodies(ctx: Any, response: schemathesis.Response, case: Case) -> None:
    """Every error is problem+json, and its ``status`` is the response's."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(PROBLEM_JSON), f"an error as {content_type!r}"
    body = response.json()
    assert body["status"] == response.status_code, body


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _schema_of(case: Case, location: str, name: str) -> dict[str, Any]:
    """The document's schema of one query parameter or top-level body field of ``case``."""
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    if location == "query":
        found = [p["schema"] for p in operation.get("parameters", []) if p["name"] == name]
        return found[0] if found else {}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    model = DOCUMENT["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {})
    schema: dict[str, Any] = model.get("properties", {}).get(name, {})
    return schema


def _lax_coercion(case: Case) -> bool:
    """The value that makes ``case`` invalid is one FastAPI's validation (pydantic, lax mode)
    converts on purpose: a Unix time for a date-time query parameter (of repeated values, the
    last is read), 0 or 1 for a boolean field of the body."""
    data = case.meta.phase.data if case.meta else None
    location = getattr(data, "parameter_location", None)
    if data is None or location is None:
        return False
    if location == "query":
        name = data.parameter or ""
        last = (case.query or {}).get(name)
        while isinstance(last, list) and last:  # sent as repeated values: the last is read
            last = last[-1]
        return "date-time" in str(_schema_of(case, "query", name)) and _is_number(last)
    if location == "body" and isinstance(case.body, dict):
        if isinstance(data, CoveragePhaseData):
            fields = {data.description.split(":")[0]}
        else:
            fields = {str(m.path[0]) for m in data.mutations if m.path}
        return bool(fields) and all(
            _schema_of(case, "body", field).get("type") == "boolean"
            and type(case.body.get(field)) is int
            and case.body.get(field) in (0, 1)
            for field in fields
        )
    return False


@schemathesis.check
def negative_data_rejected(ctx: Any, response: schemathesis.Response, case: Case) -> bool | None:
    """schemathesis's negative_data_rejection (an input the document forbids gets a 4xx), but
    for the values pydantic's lax mode converts; those are accepted on purpose."""
    if _lax_coercion(case):
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _mode(case: Case) -> GenerationMode:
    return case.meta.generation.mode if case.meta else GenerationMode.POSITIVE


def _send(case: Case, who: str, target: Target, http: requests.Session) -> schemathesis.Response:
    body: Any = case.body
    if isinstance(body, dict) and isinstance(body.get("wait"), int | float):
        body["wait"] = min(body["wait"], 0.2)  # a delivery's wait, bounded for the run
    headers = auth(target.keys[who]) if who != "anonymous" else {}
    excluded: list[CheckFunction] = [negative_data_rejection]
    if case.operation.path in SHADOWING:
        excluded.append(allow_header_conformance)
    started = time.perf_counter()
    try:
        response = case.call_and_validate(
            base_url=target.base_url,
            session=http,
            headers=headers,
            additional_checks=[problem_bodies, negative_data_rejected],
            excluded_checks=excluded,
        )
    finally:
        FIGURES.seconds += time.perf_counter() - started
        FIGURES.requests[(who, _mode(case).value)] += 1
        FIGURES.operations.add(case.operation.label)
    FIGURES.statuses[response.status_code] += 1
    FIGURES.by_operation[(case.operation.label, response.status_code)] += 1
    if case.meta is not None:
        FIGURES.phases[case.meta.phase.name.value] += 1
    return response


LOCALES = ("en-US", "fr-FR", "fr-CA", "de")
# Who sends a case: each role, nobody, or (a third of the time) a role the operation permits, so
# that cases get past the role check into the rules behind it.
PERMITTED = "permitted"


def _aim(case: Case, known: dict[str, list[str]], pick: int) -> None:
    """Point a valid case at seeded things (identifiers in the path, a phrase key and locales in
    the body or query, any ETag), so that it gets past 404 and 412 into the rules behind them."""
    for name in case.path_parameters or {}:
        if name in known:
            case.path_parameters[name] = known[name][pick % len(known[name])]
    if case.headers and "If-Match" in case.headers:
        case.headers["If-Match"] = "*"
    if case.query and "locale" in case.query:
        case.query["locale"] = LOCALES[pick % len(LOCALES)]
    body: Any = case.body
    if not isinstance(body, dict):
        return
    if "phrase_key" in body:
        body["phrase_key"] = known["key"][pick % len(known["key"])]
    for field in ("locale", "default_locale"):
        if isinstance(body.get(field), str):
            body[field] = LOCALES[pick % len(LOCALES)]
    if isinstance(body.get("texts"), dict) and body["texts"]:
        body["texts"] = dict(zip(LOCALES, body["texts"].values(), strict=False))
    if isinstance(body.get("greeting"), str):
        body["greeting"] = ("welcome", "none")[pick % 2]
    if case.operation.path.endswith("/deliveries"):
        # The seeded phrases' approved version 1 declares one variable, {{name}}, of at most 40
        # characters.
        given = [v for v in (body.get("variables") or {}).values() if isinstance(v, str)]
        body["variables"] = {"name": (given or ["Alex"])[0][:40]}
        if "version" in body:
            body["version"] = 1


def _caller_for(case: Case) -> str:
    path = case.operation.path
    if not path.startswith("/v1/"):
        return "anonymous"
    return min(allowed_roles(Endpoint(case.operation.method.upper(), path)))


@fuzzing.parametrize()
@fuzzing.given(who=st.sampled_from([*ROLES, "anonymous", *[PERMITTED] * 3]), pick=st.integers(0, 5))
def test_fuzzing(
    case: Case, who: str, pick: int, fuzz_target: Target, http: requests.Session
) -> None:
    if _mode(case) is GenerationMode.POSITIVE and pick % 2 == 0:
        _aim(case, fuzz_target.known, pick // 2)
    _send(case, _caller_for(case) if who == PERMITTED else who, fuzz_target, http)


@coverage.parametrize()
def test_coverage(case: Case, fuzz_target: Target, http: requests.Session) -> None:
    if _mode(case) is GenerationMode.POSITIVE:
        _aim(case, fuzz_target.known, 0)
    _send(case, _caller_for(case), fuzz_target, http)


def _all(http: httpx.Client, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        response = http.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if cursor is None:
            return items


# What each lifecycle event leaves a version in (an approval short of the number needed leaves
# it in review).
STATUS_AFTER = {
    "version.created": "draft",
    "version.submitted": "in_review",
    "version.approved": "approved",
    "version.rejected": "rejected",
    "version.retired": "retired",
}


def _replay(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the service should hold, from its audit trail alone."""
    state: dict[str, Any] = {
        "keys": set(),
        "revoked": set(),
        "phrases": set(),
        "versions": {},
        "policies": set(),
        "sessions": set(),
        "deliveries": set(),
    }
    for event in events:
        action, subject = event["action"], event["subject_id"]
        if action == "api_key.created":
            state["keys"].add(subject)
        elif action == "api_key.revoked":
            state["revoked"].add(subject)
        elif action == "phrase.created":
            state["phrases"].add(subject)
        elif action in STATUS_AFTER:
            state["versions"][subject] = STATUS_AFTER[action]
        elif action == "greeting_policy.created":
            state["policies"].add(subject)
        elif action == "greeting_policy.deleted":
            state["policies"].discard(subject)
        elif action == "session.started":
            state["sessions"].add(subject)
        elif action == "delivery.queued":
            state["deliveries"].add(subject)
    return state


def test_nothing_written_is_lost(fuzz_target: Target) -> None:
    """After both passes (this test comes last in the module): the audit chain verifies, its
    events are numbered without a gap, and what the service holds is exactly what its audit
    trail says it should: every key, phrase, version (in its status), greeting policy, session
    and delivery, none missing and none unrecorded."""
    admin, auditor = auth(fuzz_target.keys["admin"]), auth(fuzz_target.keys["auditor"])
    with httpx.Client(base_url=fuzz_target.base_url, timeout=30) as http:
        verified = http.get("/v1/audit/verify", headers=auditor).json()
        events = _all(http, "/v1/audit", auditor)
        keys = http.get("/v1/api-keys", headers=admin).json()["items"]
        phrases = _all(http, "/v1/phrases", auditor)
        versions = {
            f"{p['key']}/{v['number']}": v["status"]
            for p in phrases
            for v in _all(http, f"/v1/phrases/{quote(p['key'])}/versions", auditor)
        }
        policies = http.get("/v1/greeting-policies", headers=auditor).json()["items"]
        sessions = _all(http, "/v1/sessions", auditor)
        deliveries = {
            d["id"]
            for session in sessions
            for d in _all(http, f"/v1/sessions/{session['id']}/deliveries", auditor)
        }
    assert verified["ok"] is True, verified
    assert verified["first_bad_seq"] is None
    assert [e["seq"] for e in events] == list(range(1, verified["checked"] + 1))
    expected = _replay(events)
    assert {k["id"] for k in keys} == expected["keys"]
    assert {k["id"] for k in keys if k["revoked_at"]} == expected["revoked"]
    assert {p["key"] for p in phrases} == expected["phrases"]
    assert versions == expected["versions"]
    assert {p["name"] for p in policies} == expected["policies"]
    assert {s["id"] for s in sessions} == expected["sessions"]
    assert deliveries == expected["deliveries"]
    FIGURES.integrity = {name: len(found) for name, found in expected.items()}
    FIGURES.integrity["audit events"] = len(events)
