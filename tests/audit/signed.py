"""What the checkpoint tests share: the signing endpoints as an auditor calls them, and the
attacker's tools against checkpoints (rewriting the whole chain, cutting its tail, forging)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.audit.chain import event_hash
from service.audit.models import AuditCheckpoint, AuditEvent
from tests.audit.support import Event, disable_append_only, stored_events
from tests.helpers import Api


async def public_key(api: Api, who: str = "audrey") -> dict[str, Any]:
    response = await api.http.get("/v1/audit/public-key", headers=api.as_(who))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def checkpoint(api: Api, who: str = "audrey") -> dict[str, Any]:
    response = await api.http.post("/v1/audit/checkpoints", headers=api.as_(who))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def checkpoints(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = await api.http.get(
            "/v1/audit/checkpoints", params=params, headers=api.as_("audrey")
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["items"])
        if page["next_cursor"] is None:
            return found
        params["cursor"] = page["next_cursor"]


def documented_message(seq: int, head_hash: str, signed_at: str, key_id: str) -> bytes:
    """The signed bytes as README and service/audit/checkpoints.py document them, written out
    here by hand so that a change of format shows up as a failing test."""
    at = datetime.fromisoformat(signed_at).isoformat(timespec="microseconds")
    return (
        "compliance-service audit checkpoint v1\n"
        f"seq={seq}\nhead_hash={head_hash}\nsigned_at={at}\nkey_id={key_id}\n"
    ).encode()


# --- the attacker: direct access to the database with the owner's rights ------------------------


async def disable_checkpoint_append_only(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.text("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER"))
    else:
        await connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_checkpoints_no_update"))
        await connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_checkpoints_no_delete"))


async def rewrite_chain(engine: AsyncEngine, start: int, **changes: Any) -> list[Event]:
    """Change event ``start`` and recompute the hash of it and of every event after it, so that
    the chain alone is consistent again: what an attacker who knows the format does."""
    events = await stored_events(engine)
    previous = events[start - 2]["hash"] if start > 1 else "0" * 64
    rewritten: list[Event] = []
    for event in events[start - 1 :]:
        fresh = {**event, **(changes if event["seq"] == start else {}), "prev_hash": previous}
        fresh["hash"] = previous = event_hash(fresh)
        rewritten.append(fresh)
    async with engine.begin() as connection:
        await disable_append_only(connection)
        for event in rewritten:
            values = {k: v for k, v in event.items() if k != "seq"}
            await connection.execute(
                sa.update(AuditEvent).where(AuditEvent.seq == event["seq"]).values(**values)
            )
    return rewritten


async def cut_tail(engine: AsyncEngine, first_removed: int) -> None:
    async with engine.begin() as connection:
        await disable_append_only(connection)
        await connection.execute(sa.delete(AuditEvent).where(AuditEvent.seq >= first_removed))


async def replace_checkpoints(engine: AsyncEngine, *forged: dict[str, Any]) -> None:
    """Delete every checkpoint and store ``forged`` instead."""
    async with engine.begin() as connection:
        await disable_checkpoint_append_only(connection)
        await connection.execute(sa.delete(AuditCheckpoint))
        for values in forged:
            await connection.execute(sa.insert(AuditCheckpoint).values(**values))


def forged_checkpoint(
    key: Ed25519PrivateKey, seq: int, head_hash: str, signed_at: datetime, key_id: str
) -> dict[str, Any]:
    """A checkpoint signed exactly as the documentation says, but with ``key``."""
    message = documented_message(seq, head_hash, signed_at.isoformat(), key_id)
    return {
        "seq": seq,
        "head_hash": head_hash,
        "signed_at": signed_at,
        "key_id": key_id,
        "signature": base64.b64encode(key.sign(message)).decode(),
    }
