from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # manages API keys
    EDITOR = "editor"  # drafts phrases and versions
    APPROVER = "approver"  # approves, rejects, retires versions
    AGENT = "agent"  # a voice agent: resolves and speaks phrases
    AUDITOR = "auditor"  # reads and verifies the audit trail
