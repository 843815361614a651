"""Resolution: which approved text is in force for a phrase, a locale and an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from service.kit.base import utcnow
from service.phrases import errors
from service.phrases.lifecycle import Status
from service.phrases.locales import Fallback, choose_locale, normalize_locale
from service.phrases.models import Phrase, PhraseVersion
from service.phrases.service import get_phrase, get_version, texts_of, version_query


@dataclass(frozen=True)
class Resolved:
    phrase: Phrase
    version: PhraseVersion
    locale: str
    requested_locale: str
    fallback: Fallback
    text: str
    declared_start: datetime


# Statuses whose versions were in force at some time: a retired version still answers for instants
# before its retirement, so ``at=`` tells what callers heard then.
_EVER_IN_FORCE = (Status.APPROVED.value, Status.RETIRED.value)


def declared_start(version: PhraseVersion) -> datetime:
    """The start the version declares: ``effective_from``, or its approval when it names none.
    Of the versions in force, the latest declared start wins."""
    approved = version.approved_at
    assert approved is not None, "approved and retired versions always have approved_at"
    return version.effective_from or approved


def in_force_from(version: PhraseVersion) -> datetime:
    """The declared start, but never before the approval: a backdated start does not make a text
    count as in force at instants when nobody had approved it yet."""
    assert version.approved_at is not None
    return max(declared_start(version), version.approved_at)


def in_force_until(version: PhraseVersion) -> datetime | None:
    """Until its effective end or its retirement, whichever comes first (None: open-ended)."""
    ends = [t for t in (version.effective_until, version.retired_at) if t is not None]
    return min(ends) if ends else None


def _in_force(version: PhraseVersion, at: datetime) -> bool:
    until = in_force_until(version)
    return in_force_from(version) <= at and (until is None or at < until)


async def resolve(
    db: AsyncSession,
    key: str,
    *,
    locale: str | None,
    at: datetime | None = None,
    version_number: int | None = None,
) -> Resolved:
    """The approved text in force for ``locale`` at ``at`` (default: now)."""
    phrase = await get_phrase(db, key)
    at = at or utcnow()
    if version_number is not None:
        version = await _pinned(db, phrase, version_number, at)
    else:
        approved = (
            await db.scalars(
                version_query().where(
                    PhraseVersion.phrase_id == phrase.id,
                    PhraseVersion.status.in_(_EVER_IN_FORCE),
                )
            )
        ).all()
        candidates = [v for v in approved if _in_force(v, at)]
        if not candidates:
            raise errors.NoVersionInForce(
                f"phrase {key!r} has no approved version in force at {at.isoformat()}"
                + (
                    " (its approved versions are outside their effective window or retired)"
                    if approved
                    else ""
                )
            )
        version = max(candidates, key=lambda v: (declared_start(v), v.number))

    requested = normalize_locale(locale) if locale else phrase.default_locale
    texts = texts_of(version)
    choice = choose_locale(
        requested,
        texts,
        default_locale=phrase.default_locale,
        cross_language=phrase.cross_language_fallback,
    )
    if choice is None:
        raise errors.LocaleNotAvailable(
            f"version {version.number} of {key!r} has no text in {requested!r} or its language "
            f"(it has {', '.join(sorted(texts))}), and the phrase does not allow falling back "
            "to another language",
            available_locales=sorted(texts),
        )
    chosen, fallback = choice
    return Resolved(
        phrase, version, chosen, requested, fallback, texts[chosen], declared_start(version)
    )


async def _pinned(db: AsyncSession, phrase: Phrase, number: int, at: datetime) -> PhraseVersion:
    version = await get_version(db, phrase, number)
    if version.status not in _EVER_IN_FORCE:
        raise errors.NoVersionInForce(
            f"version {number} of {phrase.key!r} is {version.status}, not approved"
        )
    if not _in_force(version, at):
        raise errors.NoVersionInForce(
            f"version {number} of {phrase.key!r} is not in force at {at.isoformat()}"
        )
    return version
