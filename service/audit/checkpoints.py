"""Signed checkpoints: the pure rules (no database), shared by the service, its verify endpoint and
the command line that verifies an exported file with a public key alone.

A checkpoint says "the chain's event ``seq`` had hash ``head_hash`` at ``signed_at``", signed with
Ed25519 over exactly these bytes (UTF-8, each line ending in a line feed)::

    compliance-service audit checkpoint v1
    seq=<decimal>
    head_hash=<64 lower-case hex digits>
    signed_at=<UTC ISO 8601 with microseconds, e.g. 2026-11-24T09:30:00.123456+00:00>
    key_id=<the signing key's id: 16 hex digits of the SHA-256 of its raw public key>

The first line keeps the signature from meaning anything else. Since the hash of an event covers
every event before it, a checkpoint vouches for the whole chain up to ``seq``: a chain rewritten
consistently (every hash recomputed) no longer matches it, and a chain that ends before ``seq`` was
cut off.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.audit.chain import GENESIS_HASH, ChainCheck, Verification, canonical_time
from service.audit.keys import Signer

DOMAIN = "compliance-service audit checkpoint v1"
FIELDS = ("seq", "head_hash", "signed_at", "key_id", "signature")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    signed_at: datetime
    key_id: str
    signature: str

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Checkpoint:
        """From a stored row or a line of an export; ValueError when a field is missing or of
        the wrong type."""
        missing = [name for name in FIELDS if name not in values]
        if missing:
            raise ValueError(f"a checkpoint needs {', '.join(missing)}")
        seq, signed_at = values["seq"], values["signed_at"]
        if isinstance(signed_at, str):
            signed_at = datetime.fromisoformat(signed_at)
        texts = [values[name] for name in ("head_hash", "key_id", "signature")]
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or not isinstance(signed_at, datetime)
            or signed_at.tzinfo is None
            or not all(isinstance(t, str) for t in texts)
        ):
            raise ValueError("a checkpoint field has the wrong type")
        return cls(seq, texts[0], signed_at, texts[1], texts[2])

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "signed_at": canonical_time(self.signed_at)}

    def describe(self) -> str:
        return f"the checkpoint of event {self.seq} signed at {canonical_time(self.signed_at)}"


def message(seq: int, head_hash: str, signed_at: datetime, key_id: str) -> bytes:
    """The bytes a checkpoint's signature covers (see the module's documentation)."""
    lines = (
        DOMAIN,
        f"seq={seq}",
        f"head_hash={head_hash}",
        f"signed_at={canonical_time(signed_at)}",
        f"key_id={key_id}",
    )
    return "".join(f"{line}\n" for line in lines).encode()


def sign(signer: Signer, seq: int, head_hash: str, signed_at: datetime) -> Checkpoint:
    signature = signer.sign(message(seq, head_hash, signed_at, signer.key_id))
    return Checkpoint(seq, head_hash, signed_at, signer.key_id, signature)


def signature_problem(
    checkpoint: Checkpoint, trusted: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """None when a trusted key signed exactly this checkpoint; else what is wrong with it."""
    key = trusted.get(checkpoint.key_id)
    if key is None:
        return (
            f"{checkpoint.describe()} names key {checkpoint.key_id!r}, which is not trusted "
            f"(trusted: {', '.join(sorted(trusted))}): forged, or signed by a key whose public "
            "key was not given"
        )
    signed = message(checkpoint.seq, checkpoint.head_hash, checkpoint.signed_at, checkpoint.key_id)
    try:
        key.verify(base64.b64decode(checkpoint.signature, validate=True), signed)
    except (InvalidSignature, binascii.Error, ValueError):
        return (
            f"{checkpoint.describe()} does not verify with key {checkpoint.key_id}: "
            "it was forged or altered"
        )
    return None


class SignedChainCheck:
    """The chain check (``ChainCheck``) and, as the walk reaches each checkpoint's event, that
    checkpoint: signed by a trusted key, and naming the hash the chain has there.

    Without trusted keys no checkpoint is looked at: the result is the chain's alone, and says so
    with an empty ``public_key_ids``. A bad checkpoint makes every event after the last good
    checkpoint suspect, so ``first_bad_seq`` is the first event no good signature vouches for.
    """

    def __init__(
        self, checkpoints: Iterable[Checkpoint], trusted: Mapping[str, Ed25519PublicKey]
    ) -> None:
        self.chain = ChainCheck()
        self.trusted = dict(trusted)
        ordered = sorted(checkpoints, key=lambda c: (c.seq, c.signed_at)) if trusted else []
        self.pending = deque(ordered)
        self.checkpoints_checked = 0
        self.signed: tuple[int, str] = (0, GENESIS_HASH)  # the last event a signature vouched for
        self.signed_any = False
        self.broken: Verification | None = None
        self._reach(0, GENESIS_HASH)

    def feed(self, event: Mapping[str, Any]) -> bool:
        """Check one event (in ``seq`` order); False once something is bad (feed no more)."""
        if self.broken is not None or not self.chain.feed(event):
            return False
        return self._reach(self.chain.expected_seq - 1, self.chain.prev_hash)

    def feed_unreadable(self, seq: int) -> bool:
        return self.broken is None and self.chain.feed_unreadable(seq)

    def fail_at_next(self, problem: str) -> None:
        """The next event cannot be checked (a malformed or missing record): it is the bad one."""
        if self.broken is None and self.chain.first_bad_seq is None:
            head = self.chain.expected_seq - 1
            self.broken = Verification(
                ok=False,
                checked=self.chain.checked,
                head_seq=head,
                head_hash=self.chain.prev_hash,
                first_bad_seq=head + 1,
                problem=problem,
            )

    def fail_unsigned(self, problem: str) -> None:
        """Something is wrong with the checkpoints themselves: trust stops at the last good one."""
        if self.broken is None:
            seq, head_hash = self.signed
            self.broken = Verification(
                ok=False,
                checked=seq,
                head_seq=seq,
                head_hash=head_hash,
                first_bad_seq=seq + 1,
                problem=problem,
            )

    def _reach(self, seq: int, head_hash: str) -> bool:
        while self.pending and self.pending[0].seq <= seq:
            checkpoint = self.pending.popleft()
            problem = signature_problem(checkpoint, self.trusted)
            if problem is None and (checkpoint.seq, checkpoint.head_hash) != (seq, head_hash):
                problem = (
                    f"the chain up to event {checkpoint.seq} is not the one {checkpoint.describe()}"
                    f" vouches for: it was rewritten after event {self.signed[0]}"
                )
            if problem is not None:
                self.fail_unsigned(problem)
                return False
            self.checkpoints_checked += 1
            self.signed, self.signed_any = (seq, head_hash), True
        return True

    def _after_last_event(self) -> None:
        """Checkpoints of events the chain does not reach: it was cut off (or they are forged)."""
        if not self.pending or self.broken is not None or self.chain.first_bad_seq is not None:
            return
        checkpoint = self.pending[0]
        problem = signature_problem(checkpoint, self.trusted)
        if problem is not None:
            self.fail_unsigned(problem)
            return
        head = self.chain.expected_seq - 1
        self.fail_at_next(
            f"events {head + 1} to {checkpoint.seq} are missing: the chain ends at event {head}, "
            f"but {checkpoint.describe()} vouches for event {checkpoint.seq} (cut off)"
        )

    def result(self) -> Verification:
        self._after_last_event()
        outcome = self.broken or self.chain.result()
        return dataclasses.replace(
            outcome,
            checkpoints_checked=self.checkpoints_checked,
            last_signed_seq=self.signed[0] if self.signed_any else None,
            public_key_ids=tuple(sorted(self.trusted)),
        )
