"""Settings from the environment, and the unsafe defaults production refuses."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from service.settings import DEFAULT_DATABASE_URL, Settings

POSTGRES_URL = "postgresql://compliance@db.internal:5432/compliance"
STRONG_KEY = "a-production-admin-key-0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: no COMPLIANCE_* leaking in from the shell running the suite."""
    for name in list(os.environ):
        if name.startswith("COMPLIANCE_"):
            monkeypatch.delenv(name)


class TestDevelopment:
    def test_defaults_need_no_configuration(self) -> None:
        settings = Settings()

        assert settings.database_url == DEFAULT_DATABASE_URL
        assert settings.bootstrap_admin_key is None
        assert settings.auto_migrate is True
        assert settings.approvals_required == 1

    def test_settings_come_from_compliance_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", STRONG_KEY)
        monkeypatch.setenv("COMPLIANCE_AUTO_MIGRATE", "false")
        monkeypatch.setenv("COMPLIANCE_APPROVALS_REQUIRED", "2")

        settings = Settings()

        assert settings.database_url == POSTGRES_URL
        assert settings.bootstrap_admin_key is not None
        assert settings.bootstrap_admin_key.get_secret_value() == STRONG_KEY
        assert STRONG_KEY not in repr(settings)
        assert settings.auto_migrate is False
        assert settings.approvals_required == 2

    def test_short_bootstrap_key_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", "admin")

        with pytest.raises(ValidationError, match="bootstrap_admin_key"):
            Settings()


class TestProduction:
    @pytest.fixture(autouse=True)
    def production(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_ENVIRONMENT", "production")

    def test_default_sqlite_database_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", STRONG_KEY)

        with pytest.raises(ValidationError, match="COMPLIANCE_DATABASE_URL"):
            Settings()

    def test_missing_bootstrap_admin_key_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_DATABASE_URL", POSTGRES_URL)

        with pytest.raises(ValidationError, match="COMPLIANCE_BOOTSTRAP_ADMIN_KEY"):
            Settings()

    def test_the_simulator_as_upstream_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", STRONG_KEY)

        # Deliveries would be recorded as spoken to callers who heard nothing.
        with pytest.raises(ValidationError, match="COMPLIANCE_VOICELIVE_ENDPOINT"):
            Settings()

    def test_explicit_database_admin_key_and_upstream_are_accepted(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("COMPLIANCE_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", STRONG_KEY)
        monkeypatch.setenv("COMPLIANCE_VOICELIVE_ENDPOINT", "https://contoso.services.ai.azure.com")
        # Base64 of a 32-byte Ed25519 seed (tests/audit/test_signing_settings.py has the rest).
        monkeypatch.setenv("COMPLIANCE_AUDIT_SIGNING_KEY", "A" * 43 + "=")

        settings = Settings()

        assert settings.environment == "production"
        assert settings.database_url == POSTGRES_URL
