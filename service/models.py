"""The model registry: imports every ORM module so ``Base.metadata`` knows every table.

Alembic's env.py takes its metadata from here, so a new table can never be missed.
"""

from service.access.models import ApiKey
from service.audit.models import AuditEvent
from service.deliveries.models import Delivery, DeliveryAttempt
from service.greetings.models import GreetingGuard, GreetingPolicy
from service.kit.base import Base
from service.phrases.models import Phrase, PhraseTag, PhraseVersion, VersionApproval, VersionText
from service.sessions.models import LiveSession

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Delivery",
    "DeliveryAttempt",
    "GreetingGuard",
    "GreetingPolicy",
    "LiveSession",
    "Phrase",
    "PhraseTag",
    "PhraseVersion",
    "VersionApproval",
    "VersionText",
]
