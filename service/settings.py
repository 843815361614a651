"""Settings, read from the environment with the ``COMPLIANCE_`` prefix.

The names are flat (``COMPLIANCE_DATABASE_URL``, not ``COMPLIANCE_DATABASE__URL``) because the
public contract (shared/docs/api.md) names them that way and operators write them in manifests.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///compliance.db"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    # Errors never echo the values: a setting may be a key or a password.
    model_config = SettingsConfigDict(
        env_prefix="COMPLIANCE_", extra="ignore", hide_input_in_errors=True
    )

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        description="`production` refuses the unsafe development defaults.",
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="sqlite:///path or postgresql://user@host:port/db; the async driver is chosen.",
    )
    database_echo: bool = False
    auto_migrate: bool = Field(
        default=True, description="Apply pending migrations when the service starts."
    )
    bootstrap_admin_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Admin key a fresh database gets; generated and printed once if unset.",
    )
    approvals_required: int = Field(
        default=1, ge=1, le=10, description="Distinct approvals a version needs."
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies are refused with 413."
    )
    max_text_chars: int = Field(
        default=4000, ge=1, description="Longest text of one locale of a phrase version."
    )
    voicelive_endpoint: str | None = Field(
        default=None, description="Upstream Voice Live endpoint; default: the built-in simulator."
    )
    voicelive_api_key: SecretStr | None = None
    replica_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.database_url == DEFAULT_DATABASE_URL:
                raise ValueError(
                    "COMPLIANCE_DATABASE_URL must be set explicitly in production "
                    "(the default is a local SQLite file)"
                )
            if self.bootstrap_admin_key is None:
                raise ValueError(
                    "COMPLIANCE_BOOTSTRAP_ADMIN_KEY must be set in production: a generated key "
                    "would only be printed to a log"
                )
        return self
