from __future__ import annotations

from service.kit.errors import Conflict, InvalidInput, NotFound, ProblemError


class DeliveryNotFound(NotFound):
    slug = "delivery-not-found"
    title = "Unknown delivery"


class IdempotencyKeyReused(InvalidInput):
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used for another request"


class VariablesInvalid(InvalidInput):
    slug = "invalid-variables"
    title = "The variables do not fit the phrase"


class SessionNotLive(Conflict):
    slug = "session-not-live"
    title = "The session has ended"


class SessionElsewhere(Conflict):
    slug = "session-elsewhere"
    title = "The session's connection is not held by this replica"


class QueueFull(ProblemError):
    status = 429
    slug = "delivery-queue-full"
    title = "Too many deliveries wait in this session"
