"""Resolution: which approved text is in force for a phrase, a locale and an instant.

What resolution needs of a phrase is read into an immutable ``PhraseSnapshot`` (``load``); the
choice itself (``resolve_in``) is pure and looks only at the snapshot and the instant. The same
code answers with or without the cache (``service.phrases.cache``), so the two can never differ,
and an effective window that opens or closes needs no invalidation: the instant is applied to the
snapshot on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from service.kit.base import utcnow
from service.phrases import errors
from service.phrases.lifecycle import Status
from service.phrases.locales import Fallback, choose_locale, normalize_locale
from service.phrases.models import Phrase, PhraseVersion, VersionText
from service.phrases.service import sha256_text

# Statuses whose versions were in force at some time: a retired version still answers for instants
# before its retirement, so ``at=`` tells what callers heard then.
_EVER_IN_FORCE = (Status.APPROVED.value, Status.RETIRED.value)


@dataclass(frozen=True, eq=False)
class VersionSnapshot:
    """An approved or retired version, as resolution sees it. Never changes once read."""

    number: int
    texts: Mapping[str, str]
    sha256: Mapping[str, str]  # of each text, computed once
    variables: list[dict[str, Any]]
    effective_from: datetime | None
    effective_until: datetime | None
    approved_at: datetime
    retired_at: datetime | None

    @property
    def declared_start(self) -> datetime:
        """``effective_from``, or the approval when it names none. Of the versions in force, the
        latest declared start wins."""
        return self.effective_from or self.approved_at

    @property
    def in_force_from(self) -> datetime:
        """The declared start, but never before the approval: a backdated start does not make a
        text count as in force at instants when nobody had approved it yet."""
        return max(self.declared_start, self.approved_at)

    @property
    def in_force_until(self) -> datetime | None:
        """Until its effective end or its retirement, whichever comes first (None: open-ended)."""
        ends = [t for t in (self.effective_until, self.retired_at) if t is not None]
        return min(ends) if ends else None

    def in_force(self, at: datetime) -> bool:
        until = self.in_force_until
        return self.in_force_from <= at and (until is None or at < until)


@dataclass(frozen=True, eq=False)
class PhraseSnapshot:
    key: str
    default_locale: str
    cross_language_fallback: bool
    versions: tuple[VersionSnapshot, ...]  # those ever in force (approved or retired)
    statuses: Mapping[int, str]  # every version's number -> status, drafts included
    # Answers already rendered, by (version number, requested locale): what they say depends on
    # nothing else, so they live as long as the snapshot (which instant picks which version is
    # still decided on every request).
    rendered: dict[tuple[int, str], bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Resolved:
    phrase: PhraseSnapshot
    version: VersionSnapshot
    locale: str
    requested_locale: str
    fallback: Fallback
    text: str
    sha256: str
    declared_start: datetime


async def load(db: AsyncSession, key: str) -> PhraseSnapshot:
    """Read what resolution needs of phrase ``key`` (PhraseNotFound if there is none)."""
    phrase = (
        await db.execute(
            sa.select(Phrase.id, Phrase.default_locale, Phrase.cross_language_fallback).where(
                Phrase.key == key
            )
        )
    ).first()
    if phrase is None:
        raise errors.PhraseNotFound(f"no phrase with key {key!r}")
    rows = (
        await db.execute(
            sa.select(
                PhraseVersion.id,
                PhraseVersion.number,
                PhraseVersion.status,
                PhraseVersion.variables,
                PhraseVersion.effective_from,
                PhraseVersion.effective_until,
                PhraseVersion.approved_at,
                PhraseVersion.retired_at,
            )
            .where(PhraseVersion.phrase_id == phrase.id)
            .order_by(PhraseVersion.number)
        )
    ).all()
    in_force = [r for r in rows if r.status in _EVER_IN_FORCE]
    texts: dict[int, dict[str, str]] = {r.id: {} for r in in_force}
    if in_force:
        for version_id, locale, text in await db.execute(
            sa.select(VersionText.version_id, VersionText.locale, VersionText.text)
            .where(VersionText.version_id.in_(list(texts)))
            .order_by(VersionText.version_id, VersionText.locale)
        ):
            texts[version_id][locale] = text
    versions = []
    for r in in_force:
        assert r.approved_at is not None, "approved and retired versions always have approved_at"
        versions.append(
            VersionSnapshot(
                number=r.number,
                texts=texts[r.id],
                sha256={loc: sha256_text(t) for loc, t in texts[r.id].items()},
                variables=r.variables,
                effective_from=r.effective_from,
                effective_until=r.effective_until,
                approved_at=r.approved_at,
                retired_at=r.retired_at,
            )
        )
    return PhraseSnapshot(
        key=key,
        default_locale=phrase.default_locale,
        cross_language_fallback=phrase.cross_language_fallback,
        versions=tuple(versions),
        statuses={r.number: r.status for r in rows},
    )


def resolve_in(
    phrase: PhraseSnapshot,
    *,
    locale: str | None,
    at: datetime | None = None,
    version_number: int | None = None,
) -> Resolved:
    """The approved text of ``phrase`` in force for ``locale`` at ``at`` (default: now)."""
    at = at or utcnow()
    key = phrase.key
    if version_number is not None:
        version = _pinned(phrase, version_number, at)
    else:
        candidates = [v for v in phrase.versions if v.in_force(at)]
        if not candidates:
            raise errors.NoVersionInForce(
                f"phrase {key!r} has no approved version in force at {at.isoformat()}"
                + (
                    " (its approved versions are outside their effective window or retired)"
                    if phrase.versions
                    else ""
                )
            )
        version = max(candidates, key=lambda v: (v.declared_start, v.number))

    requested = normalize_locale(locale) if locale else phrase.default_locale
    choice = choose_locale(
        requested,
        version.texts,
        default_locale=phrase.default_locale,
        cross_language=phrase.cross_language_fallback,
    )
    if choice is None:
        raise errors.LocaleNotAvailable(
            f"version {version.number} of {key!r} has no text in {requested!r} or its language "
            f"(it has {', '.join(sorted(version.texts))}), and the phrase does not allow falling "
            "back to another language",
            available_locales=sorted(version.texts),
        )
    chosen, fallback = choice
    return Resolved(
        phrase,
        version,
        chosen,
        requested,
        fallback,
        version.texts[chosen],
        version.sha256[chosen],
        version.declared_start,
    )


def _pinned(phrase: PhraseSnapshot, number: int, at: datetime) -> VersionSnapshot:
    status = phrase.statuses.get(number)
    if status is None:
        raise errors.VersionNotFound(f"phrase {phrase.key!r} has no version {number}")
    if status not in _EVER_IN_FORCE:
        raise errors.NoVersionInForce(
            f"version {number} of {phrase.key!r} is {status}, not approved"
        )
    version = next(v for v in phrase.versions if v.number == number)
    if not version.in_force(at):
        raise errors.NoVersionInForce(
            f"version {number} of {phrase.key!r} is not in force at {at.isoformat()}"
        )
    return version


async def resolve(
    db: AsyncSession,
    key: str,
    *,
    locale: str | None,
    at: datetime | None = None,
    version_number: int | None = None,
) -> Resolved:
    """``resolve_in`` on what ``db`` holds now, without any cache: for callers that resolve
    inside their own transaction (the greeting of a session as it opens)."""
    return resolve_in(await load(db, key), locale=locale, at=at, version_number=version_number)
