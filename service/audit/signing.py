"""Which key signs the checkpoints, and which public keys their signatures are checked with.

``COMPLIANCE_AUDIT_SIGNING_KEY`` when set (production refuses to start without it). In
development without it: for a SQLite file database, a key kept in a file beside it
(``compliance.db`` -> ``compliance.db.audit-key``), made on the service's first start and read on
every later one, so checkpoints keep verifying across restarts of that database; for any other
database, a key made for the running process only, said so in a warning (checkpoints it signed no
longer verify once it is gone).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import make_url

from service.audit import keys
from service.audit.keys import Signer

if TYPE_CHECKING:
    from service.settings import Settings

log = logging.getLogger("service.audit")

KEY_FILE_SUFFIX = ".audit-key"


def development_key_file(database_url: str) -> Path | None:
    """Where a development key for this database lives: beside a SQLite file, else nowhere."""
    url = make_url(database_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):  # a SQLite URI: no plain path to put a file beside
        return None
    return Path(database + KEY_FILE_SUFFIX)


def _read_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        return keys.parse_private_key(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RuntimeError(
            f"the audit signing key in {path} cannot be read ({type(exc).__name__}); restore it, "
            "or set COMPLIANCE_AUDIT_SIGNING_KEY"
        ) from None


def _create_key_file(path: Path) -> Ed25519PrivateKey:
    """A new key, written readable by its owner only. Written beside and linked into place, so
    two processes starting at once end up with one key (the second reads the first's)."""
    key = Ed25519PrivateKey.generate()
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(keys.private_pem(key))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        partial.unlink(missing_ok=True)
    return key


def signer_for(settings: Settings, *, create: bool) -> Signer | None:
    """The signing key the settings name, or the development key of their database.

    ``create``: make the development key when there is none (the service does; the command line,
    which only verifies, never does and gets None instead). Blocking file I/O: call it in a thread
    from async code.
    """
    configured = settings.audit_signing_key
    if configured is not None:
        private = keys.parse_private_key(configured.get_secret_value())
        return Signer(private, "COMPLIANCE_AUDIT_SIGNING_KEY")
    path = development_key_file(settings.database_url)
    if path is None:
        if not create:
            return None
        signer = Signer(Ed25519PrivateKey.generate(), "generated for this process")
        log.warning(
            "COMPLIANCE_AUDIT_SIGNING_KEY is not set: audit checkpoints are signed with key %s, "
            "made for this process only; what it signs will not verify after a restart. Set "
            "COMPLIANCE_AUDIT_SIGNING_KEY to keep one.",
            signer.key_id,
        )
        return signer
    if path.exists():
        signer = Signer(_read_key_file(path), f"development key file {path}")
        if create:
            log.info("audit checkpoints are signed with key %s from %s", signer.key_id, path)
        return signer
    if not create:
        return None
    signer = Signer(_create_key_file(path), f"development key file {path}")
    log.warning(
        "COMPLIANCE_AUDIT_SIGNING_KEY is not set: made audit signing key %s and kept it in %s "
        "(keep it with the database; production needs COMPLIANCE_AUDIT_SIGNING_KEY)",
        signer.key_id,
        path,
    )
    return signer


def extra_trusted_keys(settings: Settings) -> list[Ed25519PublicKey]:
    """The public keys of earlier signing keys (COMPLIANCE_AUDIT_TRUSTED_PUBLIC_KEYS)."""
    return [keys.parse_public_key(item) for item in settings.audit_trusted_public_key_list]


def trusted_keys(settings: Settings, signer: Signer | None) -> Mapping[str, Ed25519PublicKey]:
    own = [signer.public_key] if signer is not None else []
    return keys.trusted([*own, *extra_trusted_keys(settings)])
