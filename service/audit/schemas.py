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
    checkpoints_checked: int = Field(
        default=0,
        description="Signed checkpoints found signed by a trusted key and matching the chain.",
    )
    last_signed_seq: int | None = Field(
        default=None,
        description=(
            "The newest event a verified checkpoint vouches for; events after it are protected "
            "by the chain alone (null: none)."
        ),
    )
    public_key_ids: list[str] = Field(
        default_factory=list,
        description="Ids of the public keys checkpoints were checked with (empty: not checked).",
    )


class CheckpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    seq: int = Field(description="The event whose hash is signed: the chain head when signed.")
    head_hash: str = Field(description="That event's hash.")
    signed_at: datetime
    key_id: str = Field(description="Id of the signing key (see GET /v1/audit/public-key).")
    signature: str = Field(
        description="Ed25519 signature (base64) of the checkpoint message documented in README."
    )


class CheckpointPage(BaseModel):
    items: list[CheckpointRead]
    next_cursor: str | None


class PublicKeyRead(BaseModel):
    algorithm: str = Field(description="Always Ed25519.")
    key_id: str = Field(description="First 16 hex digits of the SHA-256 of the raw public key.")
    public_key: str = Field(description="The raw 32-byte public key, base64.")
    pem: str = Field(description="The same key as PEM (SubjectPublicKeyInfo).")
    trusted_key_ids: list[str] = Field(
        description="Every key whose checkpoints verify counts: this one and earlier ones."
    )
