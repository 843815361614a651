"""Phrases as code: export the library (approved versions) to a YAML or JSON document, import such
a document as drafts. An import never approves anything: what it brings goes through review like
any other draft. It is all or nothing: one bad entry and nothing is written."""

from __future__ import annotations

import json
from typing import Any, Literal

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from service.audit import service as audit
from service.kit.actor import Actor
from service.kit.base import utcnow
from service.kit.errors import InvalidInput, validation_problems
from service.kit.types import RequestBody
from service.phrases import service
from service.phrases.lifecycle import Status
from service.phrases.models import Phrase, PhraseVersion
from service.phrases.schemas import PhraseCreate, VersionCreate

FORMAT = "compliance-phrases/1"
Format = Literal["yaml", "json"]


# The entries carry the API's own rules (they subclass its request bodies), so an entry the API
# would refuse fails the parse, before anything is written, never halfway through the import.
class VersionDoc(VersionCreate):
    model_config = ConfigDict(extra="ignore")  # exported extras (status, approvals) are info only

    number: int | None = None


class PhraseDoc(PhraseCreate):
    versions: list[VersionDoc] = Field(
        default_factory=list, description="The last one is imported as a draft."
    )


class LibraryDoc(RequestBody):
    model_config = ConfigDict(extra="ignore")

    format: Literal["compliance-phrases/1"] = "compliance-phrases/1"
    phrases: list[PhraseDoc]


class ImportReport(BaseModel):
    phrases_created: list[str]
    drafts_created: list[dict[str, Any]]
    unchanged: list[str] = Field(description="Phrases whose latest version already says this.")
    metadata_ignored: list[str] = Field(
        default_factory=list,
        description="Existing phrases whose title, category, tags, locale or fallback in the "
        "document differ from the library's: an import never changes a phrase, only drafts.",
    )


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few kilobytes of nested aliases expand into millions
    of nodes (or a cycle), which would stall the service. Phrases as code never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("anchors and aliases (*name) are not allowed")
        return super().compose_node(parent, index)


def parse_document(raw: bytes, content_type: str = "") -> LibraryDoc:
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if "json" in content_type else yaml.load(text, _NoAliasLoader)  # noqa: S506
    except (UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError) as exc:
        raise InvalidInput(f"the document is not valid YAML or JSON: {exc}") from exc
    try:
        return LibraryDoc.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise InvalidInput(
            f"the document does not describe phrases ({len(problems)} problems)",
            problems=problems,
        ) from exc


async def export_library(db: AsyncSession) -> dict[str, Any]:
    phrases = (
        await db.scalars(sa.select(Phrase).options(selectinload(Phrase.tags)).order_by(Phrase.key))
    ).all()
    approved = (
        await db.scalars(
            sa.select(PhraseVersion)
            .where(PhraseVersion.status == Status.APPROVED.value)
            .options(selectinload(PhraseVersion.texts), selectinload(PhraseVersion.approvals))
            .order_by(PhraseVersion.number)
        )
    ).all()
    by_phrase: dict[int, list[dict[str, Any]]] = {}
    for v in approved:
        by_phrase.setdefault(v.phrase_id, []).append(
            {
                "number": v.number,
                "status": v.status,
                "texts": service.texts_of(v),
                "variables": v.variables,
                "change_note": v.change_note,
                "effective_from": v.effective_from and v.effective_from.isoformat(),
                "effective_until": v.effective_until and v.effective_until.isoformat(),
                "author": v.author,
                "approved_at": v.approved_at and v.approved_at.isoformat(),
                "approved_by": [a.principal for a in v.approvals],
            }
        )
    return {
        "format": FORMAT,
        "exported_at": utcnow().isoformat(),
        "phrases": [
            {
                "key": p.key,
                "title": p.title,
                "description": p.description,
                "category": p.category,
                "tags": [t.tag for t in p.tags],
                "default_locale": p.default_locale,
                "cross_language_fallback": p.cross_language_fallback,
                "versions": by_phrase.get(p.id, []),
            }
            for p in phrases
        ],
    }


def render_document(document: dict[str, Any], fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def _content(
    texts: dict[str, str], variables: list[dict[str, Any]], v: VersionDoc | PhraseVersion
) -> tuple[Any, ...]:
    return (texts, variables, v.change_note, v.effective_from, v.effective_until)


async def import_library(
    db: AsyncSession, actor: Actor, doc: LibraryDoc, *, max_chars: int
) -> ImportReport:
    # Many appends with row locks in between: the events join the chain at the end (see there).
    async with audit.appended_last(db):
        return await _import_entries(db, actor, doc, max_chars=max_chars)


async def _import_entries(
    db: AsyncSession, actor: Actor, doc: LibraryDoc, *, max_chars: int
) -> ImportReport:
    keys = [p.key for p in doc.phrases]
    if len(set(keys)) != len(keys):
        raise InvalidInput("the document names a phrase twice", problems=sorted(keys))
    report = ImportReport(phrases_created=[], drafts_created=[], unchanged=[])
    # Lock the phrases the document names in one statement, in key order: two imports naming the
    # same phrases in another order must not each hold one and wait for the other.
    found = await db.scalars(
        sa.select(Phrase)
        .where(Phrase.key.in_(keys))
        .options(selectinload(Phrase.tags))
        .order_by(Phrase.key)
        .with_for_update()
    )
    by_key = {phrase.key: phrase for phrase in found}
    for entry in doc.phrases:
        existing = by_key.get(entry.key)
        if existing is not None and _metadata(existing) != _metadata_of_entry(entry):
            report.metadata_ignored.append(entry.key)
        if existing is None:
            await service.create_phrase(
                db, actor, PhraseCreate.model_validate(entry.model_dump(exclude={"versions"}))
            )
            report.phrases_created.append(entry.key)
        if not entry.versions:
            continue
        wanted = entry.versions[-1]
        if existing is not None and await _same_as_latest(db, existing, wanted):
            report.unchanged.append(entry.key)
            continue
        body = VersionCreate.model_validate(wanted.model_dump(exclude={"number"}))
        try:
            version = await service.create_version(db, actor, entry.key, body, max_chars=max_chars)
        except InvalidInput as exc:
            raise InvalidInput(f"phrase {entry.key!r}: {exc.detail}", **exc.extra) from exc
        report.drafts_created.append({"key": entry.key, "number": version.number})
    return report


def _metadata(phrase: Phrase) -> tuple[Any, ...]:
    tags = sorted(t.tag for t in phrase.tags)
    return (
        phrase.title,
        phrase.description,
        phrase.category,
        tags,
        phrase.default_locale,
        phrase.cross_language_fallback,
    )


def _metadata_of_entry(entry: PhraseDoc) -> tuple[Any, ...]:
    return (
        entry.title,
        entry.description,
        entry.category.value,
        sorted(set(entry.tags)),
        entry.default_locale,
        entry.cross_language_fallback,
    )


async def _same_as_latest(db: AsyncSession, phrase: Phrase, wanted: VersionDoc) -> bool:
    latest = await db.scalar(
        sa.select(PhraseVersion)
        .where(PhraseVersion.phrase_id == phrase.id)
        .where(PhraseVersion.status != Status.REJECTED.value)
        .options(selectinload(PhraseVersion.texts))
        .order_by(PhraseVersion.number.desc())
        .limit(1)
    )
    if latest is None:
        return False
    wanted_vars = [v.model_dump(exclude_none=True) for v in wanted.variables]
    return _content(service.texts_of(latest), latest.variables, latest) == _content(
        dict(wanted.texts), wanted_vars, wanted
    )
