from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Query

from service.access.dependencies import Auditor
from service.audit import service
from service.audit.schemas import AuditEventRead, AuditPage, VerifyResult
from service.kit.db import DB
from service.kit.pagination import Cursor, Limit, decode_cursor, encode_cursor
from service.kit.types import UtcTime

router = APIRouter(prefix="/v1/audit", tags=["audit"])


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
async def verify_audit_chain(caller: Auditor, db: DB) -> VerifyResult:
    return VerifyResult(**dataclasses.asdict(await service.verify(db)))
