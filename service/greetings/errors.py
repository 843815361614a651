from __future__ import annotations

from service.kit.errors import Conflict, InvalidInput, NotFound


class GreetingPolicyNotFound(NotFound):
    slug = "greeting-policy-not-found"
    title = "Unknown greeting policy"


class GreetingPolicyExists(Conflict):
    slug = "greeting-policy-exists"
    title = "A greeting policy with this name already exists"


class UnknownGreetingPhrase(InvalidInput):
    slug = "unknown-greeting-phrase"
    title = "The greeting names a phrase that does not exist"
