from __future__ import annotations

from service.kit.errors import Conflict, Forbidden, InvalidInput, NotFound


class PhraseNotFound(NotFound):
    slug = "phrase-not-found"
    title = "Unknown phrase"


class VersionNotFound(NotFound):
    slug = "version-not-found"
    title = "Unknown version"


class PhraseExists(Conflict):
    slug = "phrase-exists"
    title = "A phrase with this key already exists"


class IllegalTransition(Conflict):
    slug = "illegal-transition"
    title = "Not allowed in the version's current status"


class AlreadyApproved(Conflict):
    slug = "already-approved"
    title = "This principal already approved the version"


class FourEyesViolation(Forbidden):
    slug = "four-eyes"
    title = "Approval needs a second person"


class NoVersionInForce(NotFound):
    slug = "no-version-in-force"
    title = "No approved version is in force"


class LocaleNotAvailable(NotFound):
    slug = "locale-not-available"
    title = "No text for this locale"


class InvalidVersion(InvalidInput):
    slug = "invalid-version-content"
    title = "The version's content breaks a rule"
