"""The rules of the library: creating and editing, the lifecycle with four eyes, resolution, diff.

No HTTP here. Every change appends its audit event in the caller's transaction; functions
``flush()`` and never commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from service.audit import service as audit
from service.kit.actor import Actor
from service.kit.base import utcnow
from service.kit.errors import PreconditionFailed, PreconditionRequired
from service.kit.pagination import decode_cursor, encode_cursor
from service.phrases import errors
from service.phrases.lifecycle import TRANSITIONS, Action, Status, illegal_reason
from service.phrases.models import Phrase, PhraseTag, PhraseVersion, VersionApproval, VersionText
from service.phrases.schemas import PhraseCreate, PhraseUpdate, VersionCreate, VersionUpdate
from service.phrases.variables import Variable, check_texts


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def etag_of(version: PhraseVersion) -> str:
    return f'"v{version.number}.r{version.revision}"'


# --- phrases -------------------------------------------------------------------------------------


async def get_phrase(db: AsyncSession, key: str, *, lock: bool = False) -> Phrase:
    query = sa.select(Phrase).where(Phrase.key == key).options(selectinload(Phrase.tags))
    if lock:
        query = query.with_for_update()
    phrase = await db.scalar(query)
    if phrase is None:
        raise errors.PhraseNotFound(f"no phrase with key {key!r}")
    return phrase


async def create_phrase(db: AsyncSession, actor: Actor, body: PhraseCreate) -> Phrase:
    if await db.scalar(sa.select(Phrase.id).where(Phrase.key == body.key)) is not None:
        raise errors.PhraseExists(f"a phrase with key {body.key!r} already exists")
    phrase = Phrase(
        key=body.key,
        title=body.title,
        description=body.description,
        category=body.category.value,
        default_locale=body.default_locale,
        cross_language_fallback=body.cross_language_fallback,
        created_by=actor.principal,
        tags=[PhraseTag(tag=t) for t in sorted(set(body.tags))],
    )
    db.add(phrase)
    try:
        await db.flush()
    except IntegrityError as exc:  # a concurrent request created the same key first
        raise errors.PhraseExists(f"a phrase with key {body.key!r} already exists") from exc
    await audit.append(
        db, actor, "phrase.created", "phrase", phrase.key, body.model_dump(mode="json")
    )
    return phrase


async def update_phrase(db: AsyncSession, actor: Actor, key: str, body: PhraseUpdate) -> Phrase:
    phrase = await get_phrase(db, key, lock=True)
    # null means "leave as is" for every field that cannot be empty; only real changes count.
    changes = {
        name: value
        for name, value in body.model_dump(mode="json", exclude_unset=True).items()
        if (value is not None or name == "description") and _differs(phrase, name, value)
    }
    if not changes:
        return phrase  # nothing changed: no update, no audit event
    for name, value in changes.items():
        if name == "tags":
            wanted = sorted(set(value))
            phrase.tags = [t for t in phrase.tags if t.tag in wanted] + [
                PhraseTag(tag=t) for t in wanted if t not in {x.tag for x in phrase.tags}
            ]
        else:
            setattr(phrase, name, value)
    phrase.updated_at = utcnow()
    await db.flush()
    await audit.append(db, actor, "phrase.updated", "phrase", phrase.key, changes)
    return phrase


def _differs(phrase: Phrase, name: str, value: Any) -> bool:
    if name == "tags":
        return sorted(set(value)) != sorted(t.tag for t in phrase.tags)
    return bool(value != getattr(phrase, name))


@dataclass(frozen=True)
class PhrasePage:
    phrases: list[Phrase]
    latest: dict[int, tuple[int, str]]
    next_cursor: str | None


async def list_phrases(
    db: AsyncSession,
    *,
    category: str | None,
    tag: str | None,
    status: Status | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> PhrasePage:
    query = sa.select(Phrase).options(selectinload(Phrase.tags))
    if category:
        query = query.where(Phrase.category == category)
    if tag:
        query = query.where(
            Phrase.id.in_(sa.select(PhraseTag.phrase_id).where(PhraseTag.tag == tag))
        )
    if status:
        query = query.where(
            Phrase.id.in_(
                sa.select(PhraseVersion.phrase_id).where(PhraseVersion.status == status.value)
            )
        )
    if q:
        in_texts = (
            sa.select(PhraseVersion.phrase_id)
            .join(VersionText, VersionText.version_id == PhraseVersion.id)
            .where(VersionText.text.icontains(q, autoescape=True))
        )
        query = query.where(
            sa.or_(
                Phrase.key.icontains(q, autoescape=True),
                Phrase.title.icontains(q, autoescape=True),
                Phrase.description.icontains(q, autoescape=True),
                Phrase.id.in_(in_texts),
            )
        )
    if cursor:
        query = query.where(Phrase.key > decode_cursor(cursor, str))
    rows = list((await db.scalars(query.order_by(Phrase.key).limit(limit + 1))).all())
    page, more = rows[:limit], len(rows) > limit
    latest: dict[int, tuple[int, str]] = {}
    if page:
        versions = await db.execute(
            sa.select(PhraseVersion.phrase_id, PhraseVersion.number, PhraseVersion.status)
            .where(PhraseVersion.phrase_id.in_([p.id for p in page]))
            .order_by(PhraseVersion.phrase_id, PhraseVersion.number)
        )
        for phrase_id, number, version_status in versions:
            latest[phrase_id] = (number, version_status)
    return PhrasePage(page, latest, encode_cursor(page[-1].key) if more else None)


async def latest_version_of(db: AsyncSession, phrase: Phrase) -> tuple[int, str] | None:
    row = (
        await db.execute(
            sa.select(PhraseVersion.number, PhraseVersion.status)
            .where(PhraseVersion.phrase_id == phrase.id)
            .order_by(PhraseVersion.number.desc())
            .limit(1)
        )
    ).first()
    return (row.number, row.status) if row else None


# --- versions ------------------------------------------------------------------------------------


def version_query() -> sa.Select[PhraseVersion]:
    return sa.select(PhraseVersion).options(
        selectinload(PhraseVersion.texts), selectinload(PhraseVersion.approvals)
    )


async def get_version(
    db: AsyncSession, phrase: Phrase, number: int, *, lock: bool = False
) -> PhraseVersion:
    query = version_query().where(
        PhraseVersion.phrase_id == phrase.id, PhraseVersion.number == number
    )
    if lock:
        query = query.with_for_update()
    version = await db.scalar(query)
    if version is None:
        raise errors.VersionNotFound(f"phrase {phrase.key!r} has no version {number}")
    return version


async def list_versions(db: AsyncSession, phrase: Phrase) -> list[PhraseVersion]:
    query = version_query().where(PhraseVersion.phrase_id == phrase.id)
    return list((await db.scalars(query.order_by(PhraseVersion.number))).all())


def texts_of(version: PhraseVersion) -> dict[str, str]:
    return {t.locale: t.text for t in version.texts}


def _check_content(
    phrase: Phrase, texts: dict[str, str], variables: Sequence[Variable], max_chars: int
) -> None:
    problems = check_texts(texts, variables)
    for locale, text in sorted(texts.items()):
        if not text.strip():
            problems.append(f"texts.{locale}: the text is empty")
        if len(text) > max_chars:
            problems.append(f"texts.{locale}: longer than {max_chars} characters")
    if phrase.default_locale not in texts:
        problems.append(
            f"texts: the phrase's default locale {phrase.default_locale!r} must have a text"
        )
    if problems:
        raise errors.InvalidVersion("; ".join(problems), problems=problems)


async def create_version(
    db: AsyncSession, actor: Actor, key: str, body: VersionCreate, *, max_chars: int
) -> PhraseVersion:
    phrase = await get_phrase(db, key, lock=True)  # serializes number allocation per phrase
    variables = [Variable(**v.model_dump()) for v in body.variables]
    _check_content(phrase, body.texts, variables, max_chars)
    last = await db.scalar(
        sa.select(sa.func.max(PhraseVersion.number)).where(PhraseVersion.phrase_id == phrase.id)
    )
    now = utcnow()
    version = PhraseVersion(
        phrase_id=phrase.id,
        number=(last or 0) + 1,
        status=Status.DRAFT.value,
        variables=[v.model_dump(exclude_none=True) for v in body.variables],
        change_note=body.change_note,
        effective_from=body.effective_from,
        effective_until=body.effective_until,
        author=actor.principal,
        editors=[actor.principal],
        created_at=now,
        updated_at=now,
        texts=[VersionText(locale=loc, text=txt) for loc, txt in sorted(body.texts.items())],
        approvals=[],
    )
    db.add(version)
    await db.flush()
    await audit.append(
        db,
        actor,
        "version.created",
        "phrase_version",
        f"{key}/{version.number}",
        {**body.model_dump(mode="json"), "sha256": text_hashes(body.texts)},
    )
    return version


def text_hashes(texts: dict[str, str]) -> dict[str, str]:
    return {locale: sha256_text(text) for locale, text in sorted(texts.items())}


def _check_if_match(version: PhraseVersion, if_match: str | None) -> None:
    """A given If-Match must name the current ETag (``*`` names any); none is no condition."""
    if if_match is None:
        return
    offered = [tag.strip() for tag in if_match.split(",")]
    if "*" not in offered and etag_of(version) not in offered:
        raise PreconditionFailed(
            "the version changed since you read it; fetch it again and reapply your change",
            current_etag=etag_of(version),
        )


def _check_action(version: PhraseVersion, action: Action) -> None:
    reason = illegal_reason(Status(version.status), action)
    if reason is not None:
        raise errors.IllegalTransition(reason, current_status=version.status, action=action.value)


async def _flush_guarded(db: AsyncSession, version: PhraseVersion) -> None:
    """The revision check in the UPDATE's WHERE clause catches a writer that got in between our
    read and our write (possible where rows are not locked)."""
    try:
        await db.flush()
    except StaleDataError as exc:
        raise PreconditionFailed(
            "the version changed while this request was being handled; fetch it again"
        ) from exc


async def update_version(
    db: AsyncSession,
    actor: Actor,
    key: str,
    number: int,
    body: VersionUpdate,
    *,
    if_match: str | None,
    max_chars: int,
) -> PhraseVersion:
    phrase = await get_phrase(db, key)
    version = await get_version(db, phrase, number, lock=True)
    # 428 before 409 before 412: a missing precondition is a client bug whatever the status, and a
    # version that left draft is worth saying so even to a client holding a stale ETag.
    if if_match is None:
        raise PreconditionRequired(
            "send the version's ETag in If-Match: drafts are edited with optimistic concurrency",
            etag=etag_of(version),
        )
    _check_action(version, Action.EDIT)
    _check_if_match(version, if_match)

    changes = body.model_dump(mode="json", exclude_unset=True)
    texts = body.texts if body.texts is not None else texts_of(version)
    specs = (
        [v.model_dump(exclude_none=True) for v in body.variables]
        if body.variables is not None
        else version.variables
    )
    _check_content(phrase, texts, [Variable(**v) for v in specs], max_chars)
    window_from = body.effective_from if "effective_from" in changes else version.effective_from
    window_until = body.effective_until if "effective_until" in changes else version.effective_until
    if window_from and window_until and window_until <= window_from:
        raise errors.InvalidVersion("effective_until must be after effective_from")

    if body.texts is not None:
        by_locale = {t.locale: t for t in version.texts}
        version.texts = [t for loc, t in by_locale.items() if loc in texts]
        for loc, txt in sorted(texts.items()):
            if loc in by_locale:
                by_locale[loc].text = txt
            else:
                version.texts.append(VersionText(locale=loc, text=txt))
    version.variables = specs
    if "change_note" in changes:
        version.change_note = body.change_note
    version.effective_from, version.effective_until = window_from, window_until
    if actor.principal not in version.editors:
        version.editors = [*version.editors, actor.principal]
    version.updated_at = utcnow()  # also bumps the revision when only child rows changed
    await _flush_guarded(db, version)
    if body.texts is not None:
        changes["sha256"] = text_hashes(texts)
    await audit.append(db, actor, "version.updated", "phrase_version", f"{key}/{number}", changes)
    return version


async def _transition_target(
    db: AsyncSession, key: str, number: int, action: Action, if_match: str | None
) -> PhraseVersion:
    phrase = await get_phrase(db, key)
    version = await get_version(db, phrase, number, lock=True)
    _check_action(version, action)
    _check_if_match(version, if_match)
    return version


# How each simple move is recorded: audit action, and the columns for when, who and why.
_MOVES = {
    Action.SUBMIT: ("version.submitted", "submitted_at", "submitted_by", None),
    Action.REJECT: ("version.rejected", "rejected_at", "rejected_by", "rejection_reason"),
    Action.RETIRE: ("version.retired", "retired_at", "retired_by", "retirement_reason"),
}


async def _move(
    db: AsyncSession,
    actor: Actor,
    key: str,
    number: int,
    action: Action,
    *,
    reason: str | None = None,
    if_match: str | None = None,
) -> PhraseVersion:
    """Submit, reject or retire: the status the lifecycle table names, stamped and audited."""
    version = await _transition_target(db, key, number, action, if_match)
    event, at_column, by_column, reason_column = _MOVES[action]
    now = utcnow()
    version.status = TRANSITIONS[action][1].value
    version.updated_at = now
    setattr(version, at_column, now)
    setattr(version, by_column, actor.principal)
    if reason_column is not None:
        setattr(version, reason_column, reason)
    await _flush_guarded(db, version)
    details = {"reason": reason} if reason_column is not None else None
    await audit.append(db, actor, event, "phrase_version", f"{key}/{number}", details)
    return version


async def submit(
    db: AsyncSession, actor: Actor, key: str, number: int, *, if_match: str | None = None
) -> PhraseVersion:
    return await _move(db, actor, key, number, Action.SUBMIT, if_match=if_match)


async def approve(
    db: AsyncSession,
    actor: Actor,
    key: str,
    number: int,
    *,
    comment: str | None,
    approvals_required: int,
    if_match: str | None = None,
) -> PhraseVersion:
    version = await _transition_target(db, key, number, Action.APPROVE, if_match)
    if actor.principal in version.editors:
        rule = "author" if actor.principal == version.author else "an editor"
        raise errors.FourEyesViolation(
            f"{actor.principal!r} is {rule} of this version and cannot approve it: "
            "approval needs a principal who did not write it",
            rule="approver-must-not-have-written-the-version",
        )
    if any(a.principal == actor.principal for a in version.approvals):
        raise errors.AlreadyApproved(
            f"{actor.principal!r} already approved this version; "
            f"it needs {approvals_required} distinct approvers"
        )
    now = utcnow()
    version.approvals.append(
        VersionApproval(principal=actor.principal, key_id=actor.key_id, comment=comment, at=now)
    )
    count = len(version.approvals)
    done = count >= approvals_required
    if done:
        version.status = Status.APPROVED.value
        version.approved_at = now
    version.updated_at = now
    await _flush_guarded(db, version)
    await audit.append(
        db,
        actor,
        "version.approved" if done else "version.approval_recorded",
        "phrase_version",
        f"{key}/{number}",
        {"comment": comment, "approvals": count, "approvals_required": approvals_required},
    )
    return version


async def reject(
    db: AsyncSession,
    actor: Actor,
    key: str,
    number: int,
    *,
    reason: str,
    if_match: str | None = None,
) -> PhraseVersion:
    return await _move(db, actor, key, number, Action.REJECT, reason=reason, if_match=if_match)


async def retire(
    db: AsyncSession,
    actor: Actor,
    key: str,
    number: int,
    *,
    reason: str,
    if_match: str | None = None,
) -> PhraseVersion:
    return await _move(db, actor, key, number, Action.RETIRE, reason=reason, if_match=if_match)
