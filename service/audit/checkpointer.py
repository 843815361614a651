"""The service's signing key and its periodic checkpoints, owned by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.audit import service, signing
from service.audit.keys import Signer
from service.kit.errors import database_unreachable
from service.settings import Settings

log = logging.getLogger("service.audit")


class AuditCheckpoints:
    """Made before the lifespan's ``try`` (no I/O), started once the database is ready, stopped
    in its ``finally``. Every ``interval`` seconds it signs the chain head if it moved."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._signer: Signer | None = None
        self._trusted: Mapping[str, Ed25519PublicKey] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            raise RuntimeError("audit checkpoints are not started")
        return self._signer

    @property
    def trusted(self) -> Mapping[str, Ed25519PublicKey]:
        """The keys whose checkpoints count: the signing key and the configured earlier ones."""
        return self._trusted

    async def start(self, maker: async_sessionmaker[AsyncSession]) -> None:
        signer = await asyncio.to_thread(signing.signer_for, self.settings, create=True)
        assert signer is not None  # create=True always gives one
        self._signer = signer
        self._trusted = signing.trusted_keys(self.settings, signer)
        interval = self.settings.audit_checkpoint_interval
        if interval > 0:
            self._task = asyncio.create_task(self._every(interval, maker), name="audit-checkpoints")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])

    async def _every(self, interval: float, maker: async_sessionmaker[AsyncSession]) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.checkpoint_now(maker)

    async def checkpoint_now(self, maker: async_sessionmaker[AsyncSession]) -> None:
        """One periodic round. A failed round is logged and the next one tried: a database
        that is down for a while must not end checkpointing for the life of the process."""
        try:
            async with maker.begin() as db:
                made = await service.checkpoint_if_moved(db, self.signer)
        except Exception as exc:
            if database_unreachable(exc):
                log.warning("no audit checkpoint this round: the database is unavailable")
            else:
                log.exception("the periodic audit checkpoint failed")
            return
        if made is not None:
            log.info("audit checkpoint of event %s signed with key %s", made.seq, made.key_id)


def audit_checkpoints(request: Request) -> AuditCheckpoints:
    return cast(AuditCheckpoints, request.app.state.audit_checkpoints)
