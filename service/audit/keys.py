"""Ed25519 keys for signed checkpoints: reading them as operators write them, and naming them.

No database and no settings here: the command line verifies an exported file with this module
and a public key alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"
_RAW = 32  # bytes of an Ed25519 private seed or public key
PRIVATE_KEY_FORMS = "base64 of its 32 raw bytes, or PEM (PKCS#8)"
PUBLIC_KEY_FORMS = "PEM, or base64 of its 32 raw bytes"


def _raw_from_base64(text: str) -> bytes | None:
    """Standard or URL-safe base64, padded or not; None when it is neither or not 32 bytes."""
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    for alphabet in (None, b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == _RAW:
            return raw
    return None


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """The key from ``text``. The ValueError never repeats the text: it is a secret."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            key = None
        if isinstance(key, Ed25519PrivateKey):
            return key
        raise ValueError(f"not an unencrypted Ed25519 private key in PEM; give {PRIVATE_KEY_FORMS}")
    raw = _raw_from_base64(text)
    if raw is None:
        raise ValueError(f"not an Ed25519 private key; give {PRIVATE_KEY_FORMS}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def parse_public_key(text: str) -> Ed25519PublicKey:
    """PEM (SubjectPublicKeyInfo), base64 of the raw 32 bytes, or the JSON that
    ``GET /v1/audit/public-key`` answers."""
    text = text.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        value = document.get("public_key") if isinstance(document, dict) else None
        if not isinstance(value, str):
            raise ValueError("a JSON public key document needs a 'public_key' string")
        text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, TypeError, binascii.Error):
            key = None
        if isinstance(key, Ed25519PublicKey):
            return key
        raise ValueError(f"not an Ed25519 public key in PEM; give {PUBLIC_KEY_FORMS}")
    raw = _raw_from_base64(text)
    if raw is None:
        raise ValueError(f"not an Ed25519 public key; give {PUBLIC_KEY_FORMS}")
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_base64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public(key)).decode()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_id(key: Ed25519PublicKey) -> str:
    """The key's fingerprint: the first 16 hex digits of the SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def trusted(keys: list[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Keys by their id, as the verifiers take them."""
    return {key_id(k): k for k in keys}


@dataclass(frozen=True)
class Signer:
    """A private key and the names of its public half. ``origin`` says where it came from (for
    the operator's log line); the key itself is never logged or shown."""

    private_key: Ed25519PrivateKey
    origin: str

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> str:
        """The signature of ``message``, base64 (standard alphabet, padded)."""
        return base64.b64encode(self.private_key.sign(message)).decode()

    def __repr__(self) -> str:  # never the key, whatever prints this object
        return f"Signer(key_id={self.key_id!r}, origin={self.origin!r})"
