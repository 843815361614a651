"""Issuing, checking and revoking API keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.access.models import ApiKey
from service.access.roles import Role
from service.audit import service as audit
from service.kit.actor import SYSTEM, Actor
from service.kit.base import utcnow
from service.kit.errors import Conflict, NotFound

KEY_PREFIX = "cms_"


@dataclass(frozen=True)
class Caller:
    """An authenticated request's identity."""

    actor: Actor
    roles: frozenset[Role]

    @property
    def principal(self) -> str:
        return self.actor.principal


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_material() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_key(
    db: AsyncSession,
    actor: Actor,
    *,
    principal: str,
    roles: Iterable[Role],
    name: str | None = None,
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (``key`` given, e.g. the bootstrap key, or generated); returns the row and
    the plain key, which is not kept anywhere."""
    plain = key or new_key_material()
    row = ApiKey(
        id=uuid.uuid4().hex,
        name=name,
        principal=principal,
        roles=sorted({Role(r).value for r in roles}),
        key_hash=hash_key(plain),
        # Four random characters of a generated key identify it without weakening it; a key chosen
        # by the operator (the bootstrap key) may be short, so none of it is kept.
        prefix=plain[:8] if key is None else "",
        created_by=actor.principal,
        created_at=utcnow(),
    )
    db.add(row)
    await db.flush()
    await audit.append(
        db,
        actor,
        "api_key.created",
        "api_key",
        row.id,
        {"principal": principal, "roles": row.roles, "name": name, "prefix": row.prefix},
    )
    return row, plain


async def authenticate_hash(db: AsyncSession, key_hash: str) -> Caller | None:
    """Who holds the key whose hash this is, unless it is revoked (callers go through the app's
    key cache: ``service.access.dependencies.caller_of_hash``)."""
    return (await authenticate_hashes(db, [key_hash])).get(key_hash)


LOOKUP_CHUNK = 500  # hashes in one query (well under every database's limit of parameters)


async def authenticate_hashes(db: AsyncSession, key_hashes: Sequence[str]) -> dict[str, Caller]:
    """Who holds each of the keys whose hashes these are, for those not revoked."""
    found: dict[str, Caller] = {}
    for start in range(0, len(key_hashes), LOOKUP_CHUNK):
        chunk = key_hashes[start : start + LOOKUP_CHUNK]
        query = sa.select(ApiKey.key_hash, ApiKey.id, ApiKey.principal, ApiKey.roles).where(
            ApiKey.key_hash.in_(chunk), ApiKey.revoked_at.is_(None)
        )
        for row in await db.execute(query):
            roles = frozenset(Role(r) for r in row.roles)
            found[row.key_hash] = Caller(Actor(row.principal, row.id), roles)
    return found


async def list_keys(db: AsyncSession) -> list[ApiKey]:
    return list((await db.scalars(sa.select(ApiKey).order_by(ApiKey.created_at))).all())


async def active_roles_of(db: AsyncSession, principal: str) -> set[Role]:
    rows = await db.scalars(
        sa.select(ApiKey.roles).where(ApiKey.principal == principal, ApiKey.revoked_at.is_(None))
    )
    return {Role(role) for roles in rows for role in roles}


async def _active_admin_exists(db: AsyncSession, *, besides: str | None = None) -> bool:
    """Is there an active admin key (other than ``besides``)? Reads columns, not entities: rows
    loaded earlier in the session (the caller's own key) would keep their stale state."""
    query = sa.select(ApiKey.roles).where(ApiKey.revoked_at.is_(None))
    if besides is not None:
        query = query.where(ApiKey.id != besides)
    return any(Role.ADMIN in roles for roles in await db.scalars(query))


async def revoke_key(db: AsyncSession, actor: Actor, key_id: str) -> ApiKey:
    # One revocation at a time (the lock of the audit chain it appends to), so two admins revoking
    # each other at once cannot both pass the last-admin check below.
    await audit.lock_chain_head(db)
    # The caller's own row may already sit in the session from authentication: read it afresh.
    row = await db.get(ApiKey, key_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}")
    if row.revoked_at is not None:
        raise Conflict(f"API key {key_id!r} is already revoked", reason="already-revoked")
    if Role.ADMIN in row.roles and not await _active_admin_exists(db, besides=key_id):
        raise Conflict(
            "this is the last active admin key: create another admin key before revoking it",
            reason="last-admin-key",
        )
    row.revoked_at = utcnow()
    row.revoked_by = actor.principal
    await db.flush()
    await audit.append(
        db, actor, "api_key.revoked", "api_key", row.id, {"principal": row.principal}
    )
    return row


async def ensure_bootstrap_admin(db: AsyncSession, key: str | None) -> str | None:
    """Give a database without an active admin key (a fresh one, or one whose first keys were made
    with ``keys create``) one admin key. Returns the plain key when one was created, so the caller
    can show it once; None when an admin key already exists."""
    await audit.lock_chain_head(db)  # two replicas starting at once must not both bootstrap
    if await _active_admin_exists(db):
        return None
    if key is not None:
        reused = await db.scalar(sa.select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
        if reused is not None:  # never turn an existing (or revoked) key into an admin key
            raise RuntimeError(
                "there is no active admin key and COMPLIANCE_BOOTSTRAP_ADMIN_KEY names a key that "
                "was issued before: set a new key, or unset it to have one generated"
            )
    _, plain = await create_key(
        db,
        SYSTEM,
        principal="admin",
        roles=[Role.ADMIN],
        name="bootstrap admin",
        key=key,
    )
    return plain
