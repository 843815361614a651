from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi import Path as FastApiPath
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from service.access.dependencies import AnyRole, Approver, Editor
from service.kit.db import DB
from service.kit.errors import UnsupportedMediaType
from service.kit.pagination import Cursor, Limit
from service.kit.settings_dep import SettingsDep
from service.kit.types import UtcTime
from service.phrases import diff, resolution, service, transfer
from service.phrases.cache import library_cache
from service.phrases.lifecycle import Status
from service.phrases.models import Phrase, PhraseVersion
from service.phrases.schemas import (
    ApprovalRead,
    ApproveBody,
    Category,
    FieldChange,
    Locale,
    LocaleDiff,
    PhraseCreate,
    PhraseList,
    PhraseRead,
    PhraseUpdate,
    ReasonBody,
    Resolution,
    VariableSpec,
    VersionCreate,
    VersionDiff,
    VersionList,
    VersionRead,
    VersionSummary,
    VersionUpdate,
)
from service.phrases.schemas import Tag as TagStr

router = APIRouter(prefix="/v1/phrases", tags=["phrases"])

MAX_INT = 2**31 - 1  # the range of the database's integer columns
VersionNumber = Annotated[int, FastApiPath(ge=1, le=MAX_INT, description="Version number.")]
IfMatch = Annotated[str | None, Header(description="ETag of the version as last read.")]
MAX_RENDERED = 64  # rendered resolutions kept per phrase snapshot
IMPORT_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml")


def phrase_read(phrase: Phrase, latest: tuple[int, str] | None) -> PhraseRead:
    return PhraseRead(
        key=phrase.key,
        title=phrase.title,
        description=phrase.description,
        category=Category(phrase.category),
        tags=[t.tag for t in phrase.tags],
        default_locale=phrase.default_locale,
        cross_language_fallback=phrase.cross_language_fallback,
        created_at=phrase.created_at,
        created_by=phrase.created_by,
        updated_at=phrase.updated_at,
        latest_version=VersionSummary(number=latest[0], status=Status(latest[1]))
        if latest
        else None,
    )


def version_read(key: str, v: PhraseVersion, approvals_required: int) -> VersionRead:
    texts = service.texts_of(v)
    return VersionRead(
        phrase_key=key,
        number=v.number,
        status=Status(v.status),
        texts=texts,
        sha256=service.text_hashes(texts),
        variables=[VariableSpec.model_validate(x) for x in v.variables],
        change_note=v.change_note,
        effective_from=v.effective_from,
        effective_until=v.effective_until,
        author=v.author,
        editors=v.editors,
        created_at=v.created_at,
        updated_at=v.updated_at,
        submitted_at=v.submitted_at,
        submitted_by=v.submitted_by,
        approvals=[
            ApprovalRead(principal=a.principal, comment=a.comment, at=a.at) for a in v.approvals
        ],
        approvals_required=approvals_required,
        approved_at=v.approved_at,
        rejected_at=v.rejected_at,
        rejected_by=v.rejected_by,
        rejection_reason=v.rejection_reason,
        retired_at=v.retired_at,
        retired_by=v.retired_by,
        retirement_reason=v.retirement_reason,
        etag=service.etag_of(v),
    )


def _with_etag(response: Response, read: VersionRead) -> VersionRead:
    response.headers["ETag"] = read.etag
    return read


# --- phrases -------------------------------------------------------------------------------------


@router.post("", status_code=201, operation_id="create_phrase")
async def create_phrase(
    body: PhraseCreate, caller: Editor, db: DB, response: Response
) -> PhraseRead:
    phrase = await service.create_phrase(db, caller.actor, body)
    response.headers["Location"] = f"/v1/phrases/{phrase.key}"
    return phrase_read(phrase, None)


@router.get("", operation_id="list_phrases", response_model=PhraseList)
async def list_phrases(
    caller: AnyRole,
    request: Request,
    limit: Limit = 50,
    cursor: Cursor = None,
    category: Category | None = None,
    tag: Annotated[TagStr | None, Query()] = None,
    status: Annotated[Status | None, Query(description="Has a version in this status.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text search.")] = None,
) -> Response:
    async def build(db: AsyncSession) -> bytes:
        page = await service.list_phrases(
            db,
            category=category.value if category else None,
            tag=tag,
            status=status,
            q=q,
            cursor=cursor,
            limit=limit,
        )
        listing = PhraseList(
            items=[phrase_read(p, page.latest.get(p.id)) for p in page.phrases],
            next_cursor=page.next_cursor,
        )
        return listing.model_dump_json(by_alias=True).encode()

    # A page depends only on the library and these parameters: it is kept, rendered, until the
    # library changes (see service.phrases.cache).
    key = ("list", limit, cursor, category, tag, status, q)
    return Response(await library_cache(request).page(key, build), media_type="application/json")


@router.get(
    "/export",
    operation_id="export_phrases",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
async def export_phrases(caller: AnyRole, db: DB, format: transfer.Format = "yaml") -> Response:
    document = await transfer.export_library(db)
    return Response(
        transfer.render_document(document, format),
        media_type=f"application/{format}",
        headers={"Content-Disposition": f'attachment; filename="phrases.{format}"'},
    )


@router.post(
    "/import",
    operation_id="import_phrases",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "object"}} for t in IMPORT_TYPES[:2]},
        }
    },
)
async def import_phrases(
    request: Request, caller: Editor, db: DB, settings: SettingsDep
) -> transfer.ImportReport:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in IMPORT_TYPES:
        raise UnsupportedMediaType(
            f"send the document as {' or '.join(IMPORT_TYPES)}, not {content_type or 'nothing'}"
        )
    # Parsing a large document is CPU work: off the event loop, so other requests go on.
    body = await request.body()
    doc = await run_in_threadpool(transfer.parse_document, body, content_type)
    return await transfer.import_library(db, caller.actor, doc, max_chars=settings.max_text_chars)


@router.get("/{key}", operation_id="get_phrase")
async def get_phrase(key: str, caller: AnyRole, db: DB) -> PhraseRead:
    phrase = await service.get_phrase(db, key)
    return phrase_read(phrase, await service.latest_version_of(db, phrase))


@router.patch("/{key}", operation_id="update_phrase")
async def update_phrase(key: str, body: PhraseUpdate, caller: Editor, db: DB) -> PhraseRead:
    phrase = await service.update_phrase(db, caller.actor, key, body)
    return phrase_read(phrase, await service.latest_version_of(db, phrase))


@router.get("/{key}/resolve", operation_id="resolve_phrase", response_model=Resolution)
async def resolve_phrase(
    key: str,
    caller: AnyRole,
    request: Request,
    locale: Annotated[
        Locale | None, Query(description="BCP 47 tag; default: the phrase's.")
    ] = None,
    at: Annotated[UtcTime | None, Query(description="Instant; default now.")] = None,
    version: Annotated[int | None, Query(ge=1, le=MAX_INT, description="Pin a version.")] = None,
) -> Response:
    snapshot = await library_cache(request).phrase(key)
    r = resolution.resolve_in(snapshot, locale=locale, at=at, version_number=version)
    memo = (r.version.number, r.requested_locale)
    body = snapshot.rendered.get(memo)
    if body is None:
        body = resolution_body(r)
        if len(snapshot.rendered) < MAX_RENDERED:  # requested locales are the client's choice
            snapshot.rendered[memo] = body
    return Response(body, media_type="application/json")


def resolution_body(r: resolution.Resolved) -> bytes:
    return (
        Resolution(
            phrase_key=r.phrase.key,
            version=r.version.number,
            locale=r.locale,
            requested_locale=r.requested_locale,
            fallback=r.locale != r.requested_locale,
            fallback_kind=r.fallback,
            text=r.text,
            sha256=r.sha256,
            variables=[VariableSpec.model_validate(x) for x in r.version.variables],
            effective_from=r.declared_start,
            effective_until=r.version.in_force_until,
        )
        .model_dump_json(by_alias=True)
        .encode()
    )


# --- versions ------------------------------------------------------------------------------------


@router.post("/{key}/versions", status_code=201, operation_id="create_version")
async def create_version(
    key: str,
    body: VersionCreate,
    caller: Editor,
    db: DB,
    settings: SettingsDep,
    response: Response,
) -> VersionRead:
    version = await service.create_version(
        db, caller.actor, key, body, max_chars=settings.max_text_chars
    )
    response.headers["Location"] = f"/v1/phrases/{key}/versions/{version.number}"
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.get("/{key}/versions", operation_id="list_versions")
async def list_versions(key: str, caller: AnyRole, db: DB, settings: SettingsDep) -> VersionList:
    phrase = await service.get_phrase(db, key)
    versions = await service.list_versions(db, phrase)
    return VersionList(items=[version_read(key, v, settings.approvals_required) for v in versions])


@router.get("/{key}/versions/{number}", operation_id="get_version")
async def get_version(
    key: str,
    number: VersionNumber,
    caller: AnyRole,
    db: DB,
    settings: SettingsDep,
    response: Response,
) -> VersionRead:
    version = await service.get_version(db, await service.get_phrase(db, key), number)
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.patch("/{key}/versions/{number}", operation_id="update_version")
async def update_version(
    key: str,
    number: VersionNumber,
    body: VersionUpdate,
    caller: Editor,
    db: DB,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> VersionRead:
    version = await service.update_version(
        db, caller.actor, key, number, body, if_match=if_match, max_chars=settings.max_text_chars
    )
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.post("/{key}/versions/{number}/submit", operation_id="submit_version")
async def submit_version(
    key: str,
    number: VersionNumber,
    caller: Editor,
    db: DB,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> VersionRead:
    version = await service.submit(db, caller.actor, key, number, if_match=if_match)
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.post("/{key}/versions/{number}/approve", operation_id="approve_version")
async def approve_version(
    key: str,
    number: VersionNumber,
    caller: Approver,
    db: DB,
    settings: SettingsDep,
    response: Response,
    body: ApproveBody | None = None,
    if_match: IfMatch = None,
) -> VersionRead:
    version = await service.approve(
        db,
        caller.actor,
        key,
        number,
        comment=body.comment if body else None,
        approvals_required=settings.approvals_required,
        if_match=if_match,
    )
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.post("/{key}/versions/{number}/reject", operation_id="reject_version")
async def reject_version(
    key: str,
    number: VersionNumber,
    body: ReasonBody,
    caller: Approver,
    db: DB,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> VersionRead:
    version = await service.reject(
        db, caller.actor, key, number, reason=body.reason, if_match=if_match
    )
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.post("/{key}/versions/{number}/retire", operation_id="retire_version")
async def retire_version(
    key: str,
    number: VersionNumber,
    body: ReasonBody,
    caller: Approver,
    db: DB,
    settings: SettingsDep,
    response: Response,
    if_match: IfMatch = None,
) -> VersionRead:
    version = await service.retire(
        db, caller.actor, key, number, reason=body.reason, if_match=if_match
    )
    return _with_etag(response, version_read(key, version, settings.approvals_required))


@router.get("/{key}/versions/{number}/diff", operation_id="diff_versions")
async def diff_versions(
    key: str,
    number: VersionNumber,
    caller: AnyRole,
    db: DB,
    against: Annotated[int, Query(ge=1, le=MAX_INT, description="The version to compare with.")],
) -> VersionDiff:
    phrase = await service.get_phrase(db, key)
    new = await service.get_version(db, phrase, number)
    old = await service.get_version(db, phrase, against)
    locales, fields = diff.diff_versions(key, new, old)
    return VersionDiff(
        phrase_key=key,
        version=number,
        against=against,
        locales=[LocaleDiff.model_validate(x) for x in locales],
        fields=[FieldChange.model_validate(x) for x in fields],
    )
