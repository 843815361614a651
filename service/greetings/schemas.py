from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from service.kit.types import RequestBody
from service.phrases.schemas import PhraseKey

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# What a client sends on connect to ask for no greeting at all, so no policy may be called that.
NO_GREETING = "none"
MAX_INSTRUCTIONS = 4000


class GreetingMode(StrEnum):
    PREGENERATED = "pregenerated"  # an approved phrase, spoken word for word
    GENERATED = "generated"  # a reply the model writes from instructions


def _policy_name(value: str) -> str:
    # Checked here rather than with Field(pattern=...) so the refusal says what to change.
    if value != value.lower():
        raise ValueError(f"policy names are lower case: use {value.lower()!r}")
    if not re.fullmatch(NAME_PATTERN, value):
        raise ValueError(
            "a policy name starts with a letter or digit and holds only a-z, 0-9, '.', '_', '-'"
        )
    if value == NO_GREETING:
        raise ValueError(f"{NO_GREETING!r} is reserved: it asks for no greeting on connect")
    return value


PolicyName = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra={"pattern": NAME_PATTERN}),
    AfterValidator(_policy_name),
]


class GreetingPolicyUpdate(RequestBody):
    """The whole policy but its name: a PUT replaces every field."""

    model_config = ConfigDict(extra="forbid")

    mode: GreetingMode = Field(
        description="`pregenerated`: speak `phrase_key`'s approved text; "
        "`generated`: the model writes the greeting from `instructions`."
    )
    phrase_key: PhraseKey | None = Field(
        default=None,
        description="The phrase to speak (pregenerated only). Its approved version in force "
        "is resolved when the greeting is sent.",
    )
    instructions: str | None = Field(
        default=None,
        max_length=MAX_INSTRUCTIONS,
        description="What the model is told to say (generated only).",
    )
    interruptible: bool = Field(default=False, description="May the caller talk over it?")
    is_default: bool = Field(
        default=False,
        description="Used when a session asks for no policy by name. Only one policy is the "
        "default: setting it here clears it on the others.",
    )

    @model_validator(mode="after")
    def _fits_mode(self) -> Self:
        if self.mode is GreetingMode.PREGENERATED:
            if self.phrase_key is None:
                raise ValueError("a pregenerated greeting needs phrase_key")
            if self.instructions is not None:
                raise ValueError("a pregenerated greeting speaks a phrase: leave out instructions")
        else:
            if self.instructions is None or not self.instructions.strip():
                raise ValueError("a generated greeting needs instructions (not blank)")
            if self.phrase_key is not None:
                raise ValueError("a generated greeting has no phrase: leave out phrase_key")
        return self


class GreetingPolicyCreate(GreetingPolicyUpdate):
    name: PolicyName = Field(
        description="Lower-case slug sessions ask for, e.g. `welcome`; `none` is reserved."
    )


class GreetingPolicyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    mode: GreetingMode
    phrase_key: str | None
    instructions: str | None
    interruptible: bool
    is_default: bool
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str


class GreetingPolicyList(BaseModel):
    items: list[GreetingPolicyRead]
