"""The model registry: imports every ORM module so ``Base.metadata`` knows every table.

Alembic's env.py takes its metadata from here, so a new table can never be missed.
"""

from service.access.models import ApiKey
from service.audit.models import AuditEvent
from service.kit.base import Base
from service.phrases.models import Phrase, PhraseTag, PhraseVersion, VersionApproval, VersionText

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Phrase",
    "PhraseTag",
    "PhraseVersion",
    "VersionApproval",
    "VersionText",
]
