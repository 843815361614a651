"""Settings, read from the environment with the ``COMPLIANCE_`` prefix.

The names are flat (``COMPLIANCE_DATABASE_URL``, not ``COMPLIANCE_DATABASE__URL``) because the
public contract (shared/docs/api.md) names them that way and operators write them in manifests.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.audit.keys import parse_private_key, parse_public_key

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
    voicelive_api_key: SecretStr | None = Field(
        default=None,
        description="Key for the upstream; unset with a real endpoint: Entra ID (azure-identity).",
    )
    simulator_speed: float = Field(
        default=1.0,
        ge=0,
        description="Audio pacing of the built-in simulator (1: real time, 0: no waiting).",
    )
    upstream_connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to open the upstream session before a 502."
    )
    delivery_max_plays: int = Field(
        default=3,
        ge=1,
        le=10,
        description="Times a non-interruptible phrase is played before an interruption is final.",
    )
    delivery_answer_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds the upstream has to start a sent delivery, and the longest it may "
        "fall silent while one plays.",
    )
    delivery_queue_limit: int = Field(
        default=100, ge=1, description="Deliveries that may wait in one session's queue."
    )
    greeting_audio_hold: float = Field(
        default=5.0,
        ge=0,
        description="Longest time caller audio is held back while a greeting is being sent.",
    )
    attached_resume_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds an attached session waits for its control channel (to connect, or to come "
            "back after a drop) before it ends and what waits in it expires."
        ),
    )
    relay_stall_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a relayed peer (agent or upstream) may go without reading before the "
            "session is ended with that reason."
        ),
    )
    relay_max_message_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest WebSocket message relayed."
    )
    # Abuse limits, held in each replica's memory (a key gets them once per replica it reaches).
    rate_limit_per_second: float = Field(
        default=100.0,
        ge=0,
        description="Authenticated API requests a key may make per second (0: no limit).",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests a key may make at once above its rate."
    )
    auth_failure_limit_per_second: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Unknown or revoked keys one client address may present per second (0: no limit); "
            "past it, keys that have not just authenticated are refused from that address."
        ),
    )
    auth_failure_limit_burst: int = Field(
        default=20, ge=1, description="Failed authentications one address may make at once."
    )
    session_rate_limit_per_second: float = Field(
        default=20.0,
        ge=0,
        description="Live sessions (relayed or attached) a key may open per second (0: no limit).",
    )
    session_rate_limit_burst: int = Field(
        default=200, ge=1, description="Live sessions a key may open at once above its rate."
    )
    session_limit_per_key: int = Field(
        default=1000,
        ge=0,
        description="Live sessions one key may hold on one replica at the same time (0: no limit).",
    )
    cors_origins: str = Field(
        default="",
        description=(
            "Comma-separated browser origins that may call the API (e.g. an admin UI's); "
            "none by default."
        ),
    )
    # Signed audit checkpoints (service/audit/checkpoints.py).
    audit_signing_key: SecretStr | None = Field(
        default=None,
        description=(
            "Ed25519 private key that signs audit checkpoints: base64 of its 32 raw bytes, or "
            "PEM (PKCS#8). Unset in development: a key kept beside the SQLite database "
            "(<database>.audit-key), else one made per process; production requires it."
        ),
    )
    audit_trusted_public_keys: str = Field(
        default="",
        description=(
            "Comma-separated public keys (base64 of 32 raw bytes) of earlier signing keys, whose "
            "checkpoints still count when the chain is verified (key rotation)."
        ),
    )
    audit_checkpoint_interval: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between signed checkpoints of the chain head, made only when it "
        "moved (0: on demand only).",
    )
    replica_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def audit_trusted_public_key_list(self) -> list[str]:
        return [k.strip() for k in self.audit_trusted_public_keys.split(",") if k.strip()]

    @field_validator("audit_signing_key")
    @classmethod
    def _signing_key_is_ed25519(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:  # its error never holds the value: it is the private key
            parse_private_key(value.get_secret_value())
        return value

    @field_validator("audit_trusted_public_keys")
    @classmethod
    def _trusted_keys_are_ed25519(cls, value: str) -> str:
        for number, item in enumerate((k for k in value.split(",") if k.strip()), start=1):
            try:
                parse_public_key(item)
            except ValueError as exc:
                raise ValueError(f"key {number}: {exc}") from None
        return value

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
            if self.voicelive_endpoint is None:
                raise ValueError(
                    "COMPLIANCE_VOICELIVE_ENDPOINT must be set in production: the default is the "
                    "built-in simulator, which no caller hears"
                )
            if self.audit_signing_key is None:
                raise ValueError(
                    "COMPLIANCE_AUDIT_SIGNING_KEY must be set in production: a key generated on "
                    "start is held by no one else, so no auditor could check what it signs"
                )
        return self
