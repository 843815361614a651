"""The settings of signed checkpoints: the forms a signing key is given in, the keys that are
refused (without their value ever being repeated), and production's refusal to start without one."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from service.settings import Settings

POSTGRES_URL = "postgresql://compliance@db.internal:5432/compliance"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: no COMPLIANCE_* leaking in from the shell running the suite."""
    for name in list(os.environ):
        if name.startswith("COMPLIANCE_"):
            monkeypatch.delenv(name)


def raw_base64(key: Ed25519PrivateKey, *, urlsafe: bool = False) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(raw).decode()


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_base64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class TestSigningKey:
    def test_defaults(self) -> None:
        settings = Settings()

        assert settings.audit_signing_key is None
        assert settings.audit_checkpoint_interval == 300
        assert settings.audit_trusted_public_key_list == []

    @pytest.mark.parametrize(
        "form",
        [raw_base64, lambda k: raw_base64(k, urlsafe=True).rstrip("="), pem],
        ids=["base64", "urlsafe-unpadded", "pem"],
    )
    def test_a_key_is_read_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, form: Callable[[Ed25519PrivateKey], str]
    ) -> None:
        key = Ed25519PrivateKey.generate()
        value = form(key)
        monkeypatch.setenv("COMPLIANCE_AUDIT_SIGNING_KEY", value)

        settings = Settings()

        assert settings.audit_signing_key is not None
        assert settings.audit_signing_key.get_secret_value() == value
        assert value not in repr(settings)

    @pytest.mark.parametrize(
        "value",
        [
            base64.b64encode(b"k" * 31).decode(),  # one byte short
            "not base64 at all: a passphrase",
            "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        ],
    )
    def test_what_is_no_ed25519_key_is_refused_without_repeating_it(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("COMPLIANCE_AUDIT_SIGNING_KEY", value)

        with pytest.raises(ValidationError, match="audit_signing_key") as raised:
            Settings()

        assert "Ed25519" in str(raised.value)
        assert value not in str(raised.value)

    def test_earlier_public_keys_are_listed_and_checked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keys = [public_base64(Ed25519PrivateKey.generate()) for _ in range(2)]
        monkeypatch.setenv("COMPLIANCE_AUDIT_TRUSTED_PUBLIC_KEYS", f" {keys[0]} ,{keys[1]},")
        assert Settings().audit_trusted_public_key_list == keys

        monkeypatch.setenv("COMPLIANCE_AUDIT_TRUSTED_PUBLIC_KEYS", f"{keys[0]},nonsense")
        with pytest.raises(ValidationError, match="key 2: not an Ed25519 public key"):
            Settings()

    def test_a_negative_interval_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_AUDIT_CHECKPOINT_INTERVAL", "-1")
        with pytest.raises(ValidationError, match="audit_checkpoint_interval"):
            Settings()


class TestProduction:
    @pytest.fixture(autouse=True)
    def production(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_ENVIRONMENT", "production")
        monkeypatch.setenv("COMPLIANCE_DATABASE_URL", POSTGRES_URL)
        monkeypatch.setenv("COMPLIANCE_BOOTSTRAP_ADMIN_KEY", "a-production-admin-key-0123456789")
        monkeypatch.setenv("COMPLIANCE_VOICELIVE_ENDPOINT", "https://contoso.services.ai.azure.com")

    def test_a_missing_signing_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="COMPLIANCE_AUDIT_SIGNING_KEY must be set"):
            Settings()

    def test_a_signing_key_is_accepted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("COMPLIANCE_AUDIT_SIGNING_KEY", pem(Ed25519PrivateKey.generate()))

        assert Settings().audit_signing_key is not None
