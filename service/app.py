"""The application factory. The lifespan owns every resource; nothing is created at import."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__
from service.access import service as access
from service.access.cache import KeyCache
from service.access.dependencies import authenticated, keys_reader
from service.access.router import router as api_keys_router
from service.attached.channel import ControlChannel
from service.attached.router import control_router
from service.attached.router import router as attached_router
from service.audit.checkpointer import AuditCheckpoints
from service.audit.router import router as audit_router
from service.deliveries.router import router as deliveries_router
from service.greetings.router import router as greetings_router
from service.kit import migrate
from service.kit.db import create_engine, create_sessionmaker
from service.kit.errors import install_problem_handlers
from service.kit.limits import BodySizeLimit, RefuseNulInUrl
from service.kit.openapi import install_openapi
from service.kit.requests import RequestContext
from service.operations.router import router as operations_router
from service.phrases.router import router as phrases_router
from service.relay.router import router as relay_router
from service.relay.upstream import Upstream, make_credential
from service.sessions import service as sessions
from service.sessions.registry import LiveSessions
from service.sessions.router import router as sessions_router
from service.settings import Settings

log = logging.getLogger("service.app")


def announce_admin_key(key: str) -> None:
    """Shown once, on the terminal of whoever started the service; deliberately not logged."""
    print(
        "\n"
        "  A fresh database got its first admin API key. It is shown only now; store it:\n"
        f"\n      {key}\n\n"
        "  (Set COMPLIANCE_BOOTSTRAP_ADMIN_KEY to choose it yourself.)\n",
        file=sys.stdout,
        flush=True,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, echo=settings.database_echo)
        key = settings.voicelive_api_key
        upstream = Upstream(
            endpoint=settings.voicelive_endpoint,
            credential=make_credential(
                settings.voicelive_endpoint, key.get_secret_value() if key else None
            ),
            max_message_bytes=settings.relay_max_message_bytes,
            connect_timeout=settings.upstream_connect_timeout,
            simulator_speed=settings.simulator_speed,
        )
        app.state.audit_checkpoints = checkpoints = AuditCheckpoints(settings)
        app.state.key_cache = keys = KeyCache()
        try:
            await migrate.prepare(engine, auto=settings.auto_migrate)
            maker = create_sessionmaker(engine)
            given = settings.bootstrap_admin_key
            async with maker.begin() as db:
                created = await access.ensure_bootstrap_admin(
                    db, given.get_secret_value() if given else None
                )
                # A socket cannot outlive the process: what a previous run left live is over.
                abandoned = await sessions.close_abandoned(
                    db, settings.replica_url, "the service restarted while the session was live"
                )
            if created and given is None:
                announce_admin_key(created)
            if abandoned:
                log.warning("ended %d sessions left live by the previous run", abandoned)
            app.state.sessionmaker = maker
            app.state.read_sessionmaker = create_sessionmaker(engine, read_only=True)
            keys.start(keys_reader(app.state))  # keys in use never run out while in use
            app.state.live = live = LiveSessions()
            app.state.upstream = upstream
            await checkpoints.start(maker)  # the signing key, and checkpoints every interval
            # Everything made so far lives as long as the process: keep it out of the cyclic
            # collector, whose full passes over it were pauses of the relay of several ms.
            gc.collect()
            gc.freeze()
            yield
            for held in live.engines():  # relayed ones end with their sockets
                if isinstance(held.transport, ControlChannel):
                    try:
                        await held.transport.end("the service stopped")
                    except Exception:  # the others must still end
                        log.exception("session %s could not be ended", held.session_id)
        finally:
            await keys.stop()
            await checkpoints.stop()
            await upstream.close()
            await engine.dispose()

    app = FastAPI(
        title="Compliance message service",
        version=__version__,
        summary="Approved wording, spoken word for word into live voice agents, with proof.",
        lifespan=lifespan,
        redoc_url=None,  # one documentation page (/docs) is enough public surface
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    install_openapi(app, authentication=authenticated)  # every problem answer, documented
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RefuseNulInUrl)
    if settings.cors_origins:  # closed unless named: a browser page elsewhere may not call us
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "api-key", "Content-Type", "Idempotency-Key",
                           "If-Match", "X-Request-ID"],
            expose_headers=["X-Request-ID", "ETag", "Location", "Idempotent-Replayed"],
        )  # fmt: skip
    app.add_middleware(RequestContext)  # outermost: even a refusal above has its id
    # Every /v1 route is authenticated by default; the public routes below are the exceptions.
    v1 = APIRouter(dependencies=[Depends(authenticated)])
    for router in (
        api_keys_router,
        phrases_router,
        audit_router,
        greetings_router,
        sessions_router,
        attached_router,
        deliveries_router,
    ):
        v1.include_router(router)
    app.include_router(v1)
    # WebSockets authenticate their own handshake (key header or query).
    app.include_router(relay_router)
    app.include_router(control_router)

    app.include_router(operations_router)  # public on purpose: probes carry no credentials

    return app
