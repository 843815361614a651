from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    principal: str
    key_id: str | None
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None


class VerifyResult(BaseModel):
    ok: bool
    checked: int = Field(description="Events verified before the first bad one (or all).")
    head_seq: int = Field(description="Sequence number of the last verified event.")
    head_hash: str = Field(description="Hash of the last verified event.")
    first_bad_seq: int | None = None
    problem: str | None = None
