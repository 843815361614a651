"""POST/GET/DELETE /v1/api-keys: issuing, listing and revoking keys, and the audit trail of it."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.models import Base
from tests.helpers import ADMIN_KEY, Api, assert_problem, auth

KEYS = "/v1/api-keys"
READ_FIELDS = {
    "id",
    "name",
    "principal",
    "roles",
    "prefix",
    "created_at",
    "created_by",
    "revoked_at",
    "revoked_by",
}


async def create(api: Api, body: dict[str, Any], who: str = "admin") -> httpx.Response:
    return await api.http.post(KEYS, json=body, headers=api.as_(who))


async def listing(api: Api) -> list[dict[str, Any]]:
    response = await api.http.get(KEYS, headers=api.as_("admin"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def key_id_of(api: Api, principal: str) -> str:
    ids: list[str] = [k["id"] for k in await listing(api) if k["principal"] == principal]
    assert len(ids) == 1, ids
    return ids[0]


async def audit_events(api: Api, **filters: str) -> list[dict[str, Any]]:
    response = await api.http.get("/v1/audit", params=filters, headers=api.as_("audrey"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def everything_stored(engine: AsyncEngine) -> str:
    """Every value of every row of every table, as one text to search."""
    values: list[str] = []
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in (await connection.execute(sa.select(table))).all():
                values.extend(str(value) for value in row)
    return "\n".join(values)


class TestCreateApiKey:
    async def test_created_key_is_shown_once_and_never_listed(self, api: Api) -> None:
        response = await create(api, {"principal": "frank", "roles": ["editor"], "name": "laptop"})

        assert response.status_code == 201, response.text
        created = response.json()
        key = created["key"]
        assert set(created) == READ_FIELDS | {"key"}
        assert created["principal"] == "frank"
        assert created["roles"] == ["editor"]
        assert created["name"] == "laptop"
        assert created["created_by"] == "admin"
        assert created["revoked_at"] is None
        assert key.startswith(created["prefix"])
        assert len(created["prefix"]) < len(key) // 2

        listed = await api.http.get(KEYS, headers=api.as_("admin"))
        assert all(set(item) == READ_FIELDS for item in listed.json()["items"])
        assert key not in listed.text
        assert hashlib.sha256(key.encode()).hexdigest() not in listed.text
        revoked = await api.http.delete(f"{KEYS}/{created['id']}", headers=api.as_("admin"))
        assert key not in revoked.text

    async def test_created_key_authenticates_with_exactly_its_roles(self, api: Api) -> None:
        created = await create(api, {"principal": "gina", "roles": ["auditor", "agent"]})
        key = created.json()["key"]

        assert created.json()["roles"] == ["agent", "auditor"]
        assert (await api.http.get("/v1/audit", headers=auth(key))).status_code == 200
        assert (await api.http.get("/v1/phrases", headers=auth(key))).status_code == 200
        assert_problem(await api.http.get(KEYS, headers=auth(key)), 403, "forbidden")

    async def test_every_key_is_different(self, api: Api) -> None:
        body = {"principal": "frank", "roles": ["editor"]}
        first, second = await create(api, body), await create(api, body)

        assert first.json()["key"] != second.json()["key"]
        assert first.json()["id"] != second.json()["id"]

    async def test_keys_are_stored_only_hashed(self, api: Api, engine: AsyncEngine) -> None:
        created = await create(api, {"principal": "frank", "roles": ["editor"]})
        plain = created.json()["key"]

        stored = await everything_stored(engine)

        assert created.json()["id"] in stored  # the search does see the key's row
        assert len(created.json()["prefix"]) <= 8
        for key in (plain, ADMIN_KEY, *api.keys.values()):
            assert key not in stored
            assert key[8:24] not in stored  # nor a long piece of it past the shown prefix

    async def test_invalid_key_request_is_422_and_creates_nothing(self, api: Api) -> None:
        before = await listing(api)
        invalid: dict[str, dict[str, Any]] = {
            "unknown role": {"principal": "frank", "roles": ["superuser"]},
            "no roles": {"principal": "frank", "roles": []},
            "roles missing": {"principal": "frank"},
            "roles not a list": {"principal": "frank", "roles": "editor"},
            "empty principal": {"principal": "", "roles": ["editor"]},
            "principal with a space": {"principal": "frank smith", "roles": ["editor"]},
            "principal missing": {"roles": ["editor"]},
            "client-chosen key": {"principal": "frank", "roles": ["editor"], "key": "k" * 40},
        }

        for case, body in invalid.items():
            response = await create(api, body)
            assert response.status_code == 422, (case, response.text)
            assert_problem(response, 422, "validation-error")

        assert await listing(api) == before
        assert len(await audit_events(api, action="api_key.created")) == len(before)

    async def test_creation_is_audited_with_who_did_it(self, api: Api) -> None:
        created = (await create(api, {"principal": "frank", "roles": ["approver"]})).json()
        admin_id = await key_id_of(api, "admin")

        events = await audit_events(api, action="api_key.created", subject_id=created["id"])

        assert len(events) == 1
        event = events[0]
        assert event["principal"] == "admin"
        assert event["key_id"] == admin_id
        assert event["subject_type"] == "api_key"
        assert event["details"]["principal"] == "frank"
        assert event["details"]["roles"] == ["approver"]
        assert created["key"] not in str(event)


class TestListApiKeys:
    async def test_lists_every_key_with_its_state(self, api: Api) -> None:
        items = await listing(api)

        principals = sorted(k["principal"] for k in items)
        assert principals == sorted(["admin", *[p for p in api.keys if p != "admin"]])
        bootstrap = next(k for k in items if k["principal"] == "admin")
        assert bootstrap["roles"] == ["admin"]
        assert bootstrap["created_by"] == "system"
        assert bootstrap["prefix"] == ""  # an operator-chosen key leaves no piece behind


class TestRevokeApiKey:
    async def test_revoked_key_stops_working_and_shows_as_revoked(self, api: Api) -> None:
        alice = await key_id_of(api, "alice")

        response = await api.http.delete(f"{KEYS}/{alice}", headers=api.as_("admin"))

        assert response.status_code == 200, response.text
        assert response.json()["revoked_by"] == "admin"
        assert response.json()["revoked_at"] is not None
        assert_problem(await api.http.get("/v1/phrases", headers=api.as_("alice")), 401)
        listed = next(k for k in await listing(api) if k["id"] == alice)
        assert listed["revoked_at"] == response.json()["revoked_at"]

    async def test_revoking_twice_is_409_and_changes_nothing(self, api: Api) -> None:
        alice = await key_id_of(api, "alice")
        first = await api.http.delete(f"{KEYS}/{alice}", headers=api.as_("admin"))

        second = await api.http.delete(f"{KEYS}/{alice}", headers=api.as_("admin"))

        body = assert_problem(second, 409, "conflict")
        assert body["reason"] == "already-revoked"
        listed = next(k for k in await listing(api) if k["id"] == alice)
        assert listed["revoked_at"] == first.json()["revoked_at"]
        assert len(await audit_events(api, action="api_key.revoked", subject_id=alice)) == 1

    async def test_revoking_the_last_active_admin_key_is_409(self, api: Api) -> None:
        admin = await key_id_of(api, "admin")

        response = await api.http.delete(f"{KEYS}/{admin}", headers=api.as_("admin"))

        body = assert_problem(response, 409, "conflict")
        assert body["reason"] == "last-admin-key"
        assert (await api.http.get(KEYS, headers=api.as_("admin"))).status_code == 200
        assert await audit_events(api, action="api_key.revoked") == []

    async def test_admin_key_can_go_while_another_admin_key_remains(self, api: Api) -> None:
        api.keys["root"] = await api.new_key("root", ["admin", "auditor"])
        admin, root = await key_id_of(api, "admin"), await key_id_of(api, "root")

        revoked = await api.http.delete(f"{KEYS}/{admin}", headers=api.as_("root"))
        last = await api.http.delete(f"{KEYS}/{root}", headers=api.as_("root"))

        assert revoked.status_code == 200, revoked.text
        assert_problem(last, 409, "conflict")
        assert_problem(await api.http.get(KEYS, headers=api.as_("admin")), 401)
        assert (await api.http.get(KEYS, headers=api.as_("root"))).status_code == 200

    async def test_racing_revocations_never_leave_no_admin_key(self, api: Api) -> None:
        api.keys["root"] = await api.new_key("root", ["admin"])
        admin, root = await key_id_of(api, "admin"), await key_id_of(api, "root")

        # Each admin revokes the other at the same moment: at most one of them may succeed.
        responses = await asyncio.gather(
            api.http.delete(f"{KEYS}/{root}", headers=api.as_("admin")),
            api.http.delete(f"{KEYS}/{admin}", headers=api.as_("root")),
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200, [r.text for r in responses]
        assert statuses[1] in (401, 409), [r.text for r in responses]
        active = [k for k in await listing_as_any_admin(api) if k["revoked_at"] is None]
        assert any("admin" in k["roles"] for k in active)

    async def test_racing_revocations_of_one_key_revoke_it_once(self, api: Api) -> None:
        for who in ("root", "ops"):
            api.keys[who] = await api.new_key(who, ["admin"])
        ops = await key_id_of(api, "ops")

        # Another admin revokes ops's key while ops revokes it too.
        responses = await asyncio.gather(
            api.http.delete(f"{KEYS}/{ops}", headers=api.as_("root")),
            api.http.delete(f"{KEYS}/{ops}", headers=api.as_("ops")),
        )

        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200, [r.text for r in responses]
        assert statuses[1] in (401, 409), [r.text for r in responses]
        assert len(await audit_events(api, action="api_key.revoked", subject_id=ops)) == 1

    async def test_unknown_key_id_is_404(self, api: Api) -> None:
        response = await api.http.delete(f"{KEYS}/no-such-key", headers=api.as_("admin"))

        assert_problem(response, 404, "not-found")

    async def test_revocation_is_audited_with_who_did_it(self, api: Api) -> None:
        bob = await key_id_of(api, "bob")
        admin = await key_id_of(api, "admin")

        await api.http.delete(f"{KEYS}/{bob}", headers=api.as_("admin"))

        events = await audit_events(api, action="api_key.revoked", subject_id=bob)
        assert len(events) == 1
        assert events[0]["principal"] == "admin"
        assert events[0]["key_id"] == admin
        assert events[0]["details"]["principal"] == "bob"


async def listing_as_any_admin(api: Api) -> list[dict[str, Any]]:
    for who in ("admin", "root"):
        response = await api.http.get(KEYS, headers=api.as_(who))
        if response.status_code == 200:
            items: list[dict[str, Any]] = response.json()["items"]
            return items
    raise AssertionError("no admin key works any more")


async def test_every_key_creation_and_revocation_is_in_the_audit_trail(api: Api) -> None:
    for who in ("carol", "dave"):
        await api.http.delete(f"{KEYS}/{await key_id_of(api, who)}", headers=api.as_("admin"))

    keys = await listing(api)
    created = await audit_events(api, action="api_key.created")
    revoked = await audit_events(api, action="api_key.revoked")

    assert sorted(e["subject_id"] for e in created) == sorted(k["id"] for k in keys)
    assert sorted(e["subject_id"] for e in revoked) == sorted(
        k["id"] for k in keys if k["revoked_at"] is not None
    )
    assert len(revoked) == 2
    verify = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert verify.json()["ok"] is True
