from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from service.kit.types import RequestBody, UtcTime
from service.phrases.lifecycle import Status
from service.phrases.locales import Fallback, normalize_locale
from service.phrases.variables import NAME_PATTERN

KEY_PATTERN = r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$"
TAG_PATTERN = r"^[a-z0-9]+(?:[-_.][a-z0-9]+)*$"
RESERVED_KEYS = frozenset({"export", "import"})


class Category(StrEnum):
    GREETING = "greeting"
    DISCLOSURE = "disclosure"
    DISCLAIMER = "disclaimer"
    CONSENT = "consent"
    OTHER = "other"


def _locale(value: str) -> str:
    return normalize_locale(value)


def _key(value: str) -> str:
    if value in RESERVED_KEYS:
        raise ValueError(f"{value!r} is reserved")
    return value


def _distinct_locales(value: object) -> object:
    """Two spellings of one tag (``en-us``, ``en-US``) would otherwise collapse silently into one
    text, dropping the other: refuse them instead."""
    if isinstance(value, dict):
        seen: dict[str, str] = {}
        for raw in value:
            try:
                canonical = normalize_locale(raw) if isinstance(raw, str) else None
            except ValueError:
                canonical = None  # the key's own validation reports it
            if canonical is None:
                continue
            if canonical in seen:
                raise ValueError(f"{seen[canonical]!r} and {raw!r} are one locale, {canonical!r}")
            seen[canonical] = raw
    return value


Locale = Annotated[str, AfterValidator(_locale), Field(max_length=35, examples=["en-GB"])]
Texts = Annotated[dict[Locale, str], BeforeValidator(_distinct_locales)]
PhraseKey = Annotated[
    str, Field(min_length=1, max_length=100, pattern=KEY_PATTERN), AfterValidator(_key)
]
Tag = Annotated[str, Field(min_length=1, max_length=50, pattern=TAG_PATTERN)]


class PhraseCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    key: PhraseKey = Field(description="Stable slug, e.g. `call-recording-disclosure`.")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    category: Category
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    default_locale: Locale
    cross_language_fallback: bool = Field(
        default=False,
        description="May resolution fall back to the default locale of another language?",
    )


class PhraseUpdate(RequestBody):
    """Descriptive fields only: what callers hear (locales, fallback) changes through versions."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    category: Category | None = None
    tags: list[Tag] | None = Field(default=None, max_length=20)


class VersionSummary(BaseModel):
    number: int
    status: Status


class PhraseRead(BaseModel):
    key: str
    title: str
    description: str | None
    category: Category
    tags: list[str]
    default_locale: str
    cross_language_fallback: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    latest_version: VersionSummary | None = Field(
        default=None, description="The highest-numbered version, whatever its status."
    )


class PhraseList(BaseModel):
    items: list[PhraseRead]
    next_cursor: str | None


class VariableSpec(RequestBody):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Used in the text as `{{name}}`.")
    pattern: str | None = Field(
        default=None, max_length=500, description="Regex a value must match in full."
    )
    max_length: int | None = Field(default=None, ge=1, le=1000)


class _VersionContent(RequestBody):
    model_config = ConfigDict(extra="forbid")

    effective_from: UtcTime | None = Field(
        default=None, description="In force from; default: from its approval."
    )
    effective_until: UtcTime | None = Field(default=None, description="In force until (excl.).")

    @model_validator(mode="after")
    def _window(self) -> Self:
        if (
            self.effective_from is not None
            and self.effective_until is not None
            and self.effective_until <= self.effective_from
        ):
            raise ValueError("effective_until must be after effective_from")
        return self


class VersionCreate(_VersionContent):
    texts: Texts = Field(
        min_length=1, description="Text per BCP 47 locale; must include the default locale."
    )
    variables: list[VariableSpec] = Field(default_factory=list, max_length=50)
    change_note: str | None = Field(default=None, max_length=5000)


class VersionUpdate(_VersionContent):
    """Fields left out stay as they are; ``texts`` and ``variables`` replace the whole set."""

    texts: Texts | None = Field(default=None, min_length=1)
    variables: list[VariableSpec] | None = Field(default=None, max_length=50)
    change_note: str | None = Field(default=None, max_length=5000)


class ApprovalRead(BaseModel):
    principal: str
    comment: str | None
    at: datetime


class VersionRead(BaseModel):
    phrase_key: str
    number: int
    status: Status
    texts: dict[str, str]
    sha256: dict[str, str] = Field(description="Hex SHA-256 of each locale's UTF-8 text.")
    variables: list[VariableSpec]
    change_note: str | None
    effective_from: datetime | None
    effective_until: datetime | None
    author: str
    editors: list[str] = Field(description="Everyone who wrote this version's content.")
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    submitted_by: str | None
    approvals: list[ApprovalRead]
    approvals_required: int
    approved_at: datetime | None
    rejected_at: datetime | None
    rejected_by: str | None
    rejection_reason: str | None
    retired_at: datetime | None
    retired_by: str | None
    retirement_reason: str | None
    etag: str


class VersionList(BaseModel):
    items: list[VersionRead]


class ApproveBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=5000)


class ReasonBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=5000)


class Resolution(BaseModel):
    phrase_key: str
    version: int
    locale: str = Field(description="The locale whose text is returned.")
    requested_locale: str
    fallback: bool = Field(description="True when `locale` differs from `requested_locale`.")
    fallback_kind: Fallback
    text: str
    sha256: str = Field(description="Hex SHA-256 of the UTF-8 text.")
    variables: list[VariableSpec]
    effective_from: datetime = Field(
        description="The version's effective_from, or its approval when it declares none."
    )
    effective_until: datetime | None = Field(
        description="When it stops being in force: its effective end or its retirement."
    )


class LocaleDiff(BaseModel):
    locale: str
    change: str = Field(description="added, removed, changed or unchanged")
    diff: str = Field(description="Unified diff of the text (empty when unchanged).")


class FieldChange(BaseModel):
    field: str
    before: object
    after: object


class VersionDiff(BaseModel):
    phrase_key: str
    version: int
    against: int
    locales: list[LocaleDiff]
    fields: list[FieldChange] = Field(description="Other content that differs.")
