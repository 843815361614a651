from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.access.roles import Role
from service.kit.types import RequestBody

PRINCIPAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,199}$"


class ApiKeyCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    principal: Annotated[str, AfterValidator(str.lower)] = Field(
        pattern=PRINCIPAL_PATTERN,
        description="The person or system that holds the key; four-eyes rules compare these, "
        "so it is stored in lower case (Alice and alice are one person).",
    )
    roles: list[Role] = Field(min_length=1, description="One or more roles.")
    name: str | None = Field(default=None, max_length=200, description="A label for humans.")


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    principal: str
    roles: list[Role]
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown only in this response; store it now.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyRead]
