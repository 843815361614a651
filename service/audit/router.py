from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.access.dependencies import AnyRole, Auditor, require
from service.access.roles import Role
from service.access.service import Caller
from service.audit import keys, service
from service.audit.checkpointer import AuditCheckpoints, audit_checkpoints
from service.audit.export import MEDIA_TYPE, export_lines
from service.audit.schemas import (
    AuditEventRead,
    AuditPage,
    CheckpointPage,
    CheckpointRead,
    PublicKeyRead,
    VerifyResult,
)
from service.kit.db import DB
from service.kit.pagination import Cursor, Limit, decode_cursor, encode_cursor
from service.kit.types import UtcTime

router = APIRouter(prefix="/v1/audit", tags=["audit"])

Checkpoints = Annotated[AuditCheckpoints, Depends(audit_checkpoints)]
# Signing on demand (say, right before an export) is for whoever answers for the trail.
AuditorOrAdmin = Annotated[Caller, Depends(require(Role.AUDITOR, Role.ADMIN))]


@router.get("", operation_id="list_audit_events")
async def list_audit_events(
    caller: Auditor,
    db: DB,
    limit: Limit = 100,
    cursor: Cursor = None,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    principal: str | None = None,
    since: Annotated[UtcTime | None, Query(description="At or after this instant.")] = None,
    until: Annotated[UtcTime | None, Query(description="Before this instant.")] = None,
) -> AuditPage:
    after = decode_cursor(cursor, int) if cursor else 0
    rows = await service.list_events(
        db,
        after_seq=after,
        limit=limit + 1,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        principal=principal,
        since=since,
        until=until,
    )
    page = rows[:limit]
    return AuditPage(
        items=[AuditEventRead.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1].seq) if len(rows) > limit else None,
    )


@router.get("/verify", operation_id="verify_audit_chain")
async def verify_audit_chain(caller: Auditor, db: DB, signing: Checkpoints) -> VerifyResult:
    """The chain, and every checkpoint with the service's public key (and earlier trusted ones)."""
    return VerifyResult(**dataclasses.asdict(await service.verify(db, signing.trusted)))


@router.post("/checkpoints", status_code=201, operation_id="create_audit_checkpoint")
async def create_audit_checkpoint(
    caller: AuditorOrAdmin, db: DB, signing: Checkpoints
) -> CheckpointRead:
    """Sign the chain head now (also done every COMPLIANCE_AUDIT_CHECKPOINT_INTERVAL seconds)."""
    return CheckpointRead.model_validate(await service.create_checkpoint(db, signing.signer))


@router.get("/checkpoints", operation_id="list_audit_checkpoints")
async def list_audit_checkpoints(
    caller: Auditor, db: DB, limit: Limit = 100, cursor: Cursor = None
) -> CheckpointPage:
    after = decode_cursor(cursor, int) if cursor else 0
    rows = await service.list_checkpoints(db, after_id=after, limit=limit + 1)
    page = rows[:limit]
    return CheckpointPage(
        items=[CheckpointRead.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1].id) if len(rows) > limit else None,
    )


@router.get("/public-key", operation_id="get_audit_public_key")
async def get_audit_public_key(caller: AnyRole, signing: Checkpoints) -> PublicKeyRead:
    """The key checkpoints are signed with. An auditor should get it out of band as well: a
    service that was taken over could answer another one here."""
    public = signing.signer.public_key
    return PublicKeyRead(
        algorithm=keys.ALGORITHM,
        key_id=keys.key_id(public),
        public_key=keys.public_base64(public),
        pem=keys.public_pem(public),
        trusted_key_ids=sorted(signing.trusted),
    )


@router.get(
    "/export",
    operation_id="export_audit_trail",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "JSON Lines (see README)."}},
)
async def export_audit_trail(caller: Auditor, request: Request) -> StreamingResponse:
    """Every event and checkpoint as one file that `compliance-service audit verify --file`
    checks with the public key alone. Streamed from a read transaction of its own."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker

    async def lines() -> AsyncIterator[bytes]:
        async with maker() as db:
            async for line in export_lines(db):
                yield line.encode()

    return StreamingResponse(
        lines(),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": 'attachment; filename="audit-export.jsonl"'},
    )
