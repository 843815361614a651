"""Signed checkpoints through the API: signing on demand and every interval, the published public
key, what verify reports about them, and the keys that sign them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from service.app import create_app
from service.audit.models import AuditCheckpoint
from service.settings import Settings
from tests.audit.signed import checkpoint, checkpoints, documented_message, public_key
from tests.audit.support import all_events, verify
from tests.conftest import backend
from tests.helpers import Api, assert_problem


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Api]:
    """The service on ``settings``, started and stopped like a real one, with a key per role."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield await Api.with_keys(http)


def raw_base64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_base64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_file_facts(path: Path) -> tuple[int, str]:
    """The file's permission bits, and the key it holds (PEM's base64 body)."""
    return path.stat().st_mode & 0o777, "".join(path.read_text().splitlines()[1:-1])


def exists(path: Path) -> bool:
    return path.exists()


def fingerprint(key: Ed25519PrivateKey) -> str:
    return hashlib.sha256(base64.b64decode(public_base64(key))).hexdigest()[:16]


class TestSigningOnDemand:
    async def test_an_auditor_signs_the_head_and_the_published_key_verifies_it(
        self, api: Api
    ) -> None:
        await api.create_phrase()
        head = (await all_events(api))[-1]

        made = await checkpoint(api)

        assert (made["seq"], made["head_hash"]) == (head["seq"], head["hash"])
        published = await public_key(api)
        assert published["algorithm"] == "Ed25519"
        assert made["key_id"] == published["key_id"]
        raw = base64.b64decode(published["public_key"])
        assert published["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
        from_pem = serialization.load_pem_public_key(published["pem"].encode())
        assert isinstance(from_pem, Ed25519PublicKey)
        assert (
            from_pem.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == raw
        )
        # The signature covers the documented message, checked here with nothing of the service.
        message = documented_message(
            made["seq"], made["head_hash"], made["signed_at"], made["key_id"]
        )
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(made["signature"]), message)
        assert await checkpoints(api) == [made]

    async def test_an_admin_may_sign_too(self, api: Api) -> None:
        made = await checkpoint(api, "admin")
        assert made["seq"] == (await verify(api))["head_seq"]

    @pytest.mark.parametrize("who", ["alice", "bob", "eve", "agent-1"])
    async def test_other_roles_may_not_sign(self, api: Api, who: str) -> None:
        response = await api.http.post("/v1/audit/checkpoints", headers=api.as_(who))
        assert_problem(response, 403, "forbidden")
        assert await checkpoints(api) == []

    async def test_without_a_key_nothing_is_signed_or_shown(self, api: Api) -> None:
        assert_problem(await api.http.post("/v1/audit/checkpoints"), 401, "unauthenticated")
        assert_problem(await api.http.get("/v1/audit/checkpoints"), 401, "unauthenticated")
        assert_problem(await api.http.get("/v1/audit/public-key"), 401, "unauthenticated")

    @pytest.mark.parametrize("who", ["admin", "alice", "agent-1"])
    async def test_only_auditors_list_checkpoints(self, api: Api, who: str) -> None:
        response = await api.http.get("/v1/audit/checkpoints", headers=api.as_(who))
        assert_problem(response, 403, "forbidden")

    @pytest.mark.parametrize("who", ["admin", "alice", "bob", "agent-1", "audrey"])
    async def test_every_role_reads_the_public_key(self, api: Api, who: str) -> None:
        assert (await public_key(api, who))["key_id"] == (await public_key(api))["key_id"]

    async def test_checkpoints_are_listed_oldest_first_page_by_page(self, api: Api) -> None:
        made = [await checkpoint(api)]
        await api.create_phrase()
        made += [await checkpoint(api), await checkpoint(api)]

        first = await api.http.get(
            "/v1/audit/checkpoints", params={"limit": 2}, headers=api.as_("audrey")
        )
        page = first.json()
        assert page["items"] == made[:2]
        rest = await api.http.get(
            "/v1/audit/checkpoints",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=api.as_("audrey"),
        )
        assert rest.json() == {"items": made[2:], "next_cursor": None}
        assert made[0]["seq"] < made[1]["seq"] == made[2]["seq"]


class TestVerifyReportsTheCheckpoints:
    async def test_an_intact_chain_with_checkpoints(self, api: Api) -> None:
        first = await checkpoint(api)
        await api.create_phrase()
        second = await checkpoint(api, "admin")

        result = await verify(api)

        assert result["ok"] is True
        assert result["checkpoints_checked"] == 2
        assert result["last_signed_seq"] == second["seq"] > first["seq"]
        assert result["public_key_ids"] == [(await public_key(api))["key_id"]]

    async def test_events_after_the_last_checkpoint_are_shown_as_unsigned(self, api: Api) -> None:
        signed = await checkpoint(api)
        await api.create_phrase()

        result = await verify(api)

        assert result["ok"] is True
        assert result["last_signed_seq"] == signed["seq"] < result["head_seq"]

    async def test_without_checkpoints_nothing_is_signed_yet(self, api: Api) -> None:
        result = await verify(api)
        assert (result["ok"], result["checkpoints_checked"], result["last_signed_seq"]) == (
            True,
            0,
            None,
        )


class TestPeriodicCheckpoints:
    async def test_the_head_is_signed_every_interval_but_only_when_it_moved(
        self, settings: Settings
    ) -> None:
        async def signed_head(api: Api) -> list[dict[str, Any]]:
            """Wait until the head is signed; the checkpoints then."""
            for _ in range(200):
                head = (await verify(api))["head_seq"]
                made = await checkpoints(api)
                if made and made[-1]["seq"] == head:
                    return made
                await asyncio.sleep(0.05)
            pytest.fail(f"the head {head} was not signed in 10 s: {made}")

        quick = settings.model_copy(update={"audit_checkpoint_interval": 0.05})
        async with running(quick) as api:
            before = await signed_head(api)
            await asyncio.sleep(0.5)  # ten intervals with nothing new
            assert await checkpoints(api) == before

            await api.create_phrase()
            after = await signed_head(api)
            assert after[: len(before)] == before
            assert len(after) == len(before) + 1
            assert (await verify(api))["last_signed_seq"] == after[-1]["seq"]

    async def test_an_interval_of_zero_signs_only_on_demand(self, settings: Settings) -> None:
        off = settings.model_copy(update={"audit_checkpoint_interval": 0})
        async with running(off) as api:
            await asyncio.sleep(0.2)
            assert await checkpoints(api) == []


class TestTheDatabaseRefusesChangesToCheckpoints:
    async def test_update_and_delete_raise(self, api: Api, attacker: AsyncEngine) -> None:
        made = await checkpoint(api)
        statements: list[sa.Executable] = [
            sa.update(AuditCheckpoint).values(head_hash="0" * 64),
            sa.delete(AuditCheckpoint),
        ]
        if attacker.dialect.name == "postgresql":
            statements.append(sa.text("TRUNCATE audit_checkpoints"))
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                async with attacker.begin() as connection:
                    await connection.execute(statement)
        assert await checkpoints(api) == [made]


class TestSigningKeys:
    async def test_a_development_key_lasts_as_long_as_its_database(
        self, settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with running(settings) as api:
            first_key = await public_key(api)
            await checkpoint(api)
        async with running(settings) as api:
            second_key = await public_key(api)
            result = await verify(api)

        if backend() == "sqlite":
            # Kept beside the database file, readable by its owner alone, and read again.
            database = make_url(settings.database_url).database
            assert database is not None
            key_file = Path(f"{database}.audit-key")
            mode, secret = key_file_facts(key_file)
            assert mode == 0o600
            assert second_key == first_key
            assert (result["ok"], result["checkpoints_checked"]) == (True, 1)
            assert secret not in caplog.text
            assert str(key_file) in caplog.text
        else:
            # No file to keep it in: one per process, and the log says what that means.
            assert second_key["key_id"] != first_key["key_id"]
            assert "will not verify after a restart" in caplog.text
            assert result["ok"] is False
            assert "not trusted" in result["problem"]

    @pytest.mark.parametrize("form", [raw_base64, pem])
    async def test_a_configured_key_signs(self, settings: Settings, form: Any) -> None:
        key = Ed25519PrivateKey.generate()
        configured = settings.model_copy(update={"audit_signing_key": SecretStr(form(key))})
        async with running(configured) as api:
            published = await public_key(api)
            made = await checkpoint(api)
        assert published["public_key"] == public_base64(key)
        assert made["key_id"] == published["key_id"] == fingerprint(key)
        database = make_url(settings.database_url).database
        if database is not None and backend() == "sqlite":
            assert not exists(Path(f"{database}.audit-key"))  # nothing generated

    async def test_after_a_key_rotation_the_earlier_key_is_trusted_only_when_named(
        self, settings: Settings
    ) -> None:
        old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        with_old = settings.model_copy(update={"audit_signing_key": SecretStr(raw_base64(old))})
        with_new = settings.model_copy(update={"audit_signing_key": SecretStr(raw_base64(new))})
        trusting_old = with_new.model_copy(update={"audit_trusted_public_keys": public_base64(old)})
        async with running(with_old) as api:
            signed_by_old = await checkpoint(api)

        async with running(with_new) as api:
            refused = await verify(api)
        async with running(trusting_old) as api:
            accepted = await verify(api)
            published = await public_key(api)

        assert refused["ok"] is False
        assert fingerprint(old) in refused["problem"]
        assert "not trusted" in refused["problem"]
        assert (accepted["ok"], accepted["checkpoints_checked"]) == (True, 1)
        assert accepted["last_signed_seq"] == signed_by_old["seq"]
        assert accepted["public_key_ids"] == sorted([fingerprint(old), fingerprint(new)])
        assert published["key_id"] == fingerprint(new)
        assert published["trusted_key_ids"] == accepted["public_key_ids"]
