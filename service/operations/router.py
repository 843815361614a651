"""Probes and metrics. Public on purpose: probes and scrapers carry no credentials, and nothing
here is more than a count."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from service.deliveries.models import Delivery
from service.deliveries.states import Status
from service.kit.errors import problem_response
from service.sessions.registry import LiveSessions

log = logging.getLogger("service.app")

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz")
async def readyz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.read_sessionmaker() as db:  # never waits for a writer
            await db.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means not ready
        log.warning("readiness check failed: %s", type(exc).__name__)
        return problem_response(503, "not-ready", "Not ready", "the database cannot be reached")
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text format: sessions this replica holds, and deliveries by kind and status
    (counted from the database, so every replica reports the same totals)."""
    live: LiveSessions = request.app.state.live
    async with request.app.state.read_sessionmaker() as db:
        rows = (
            await db.execute(
                sa.select(Delivery.kind, Delivery.status, sa.func.count()).group_by(
                    Delivery.kind, Delivery.status
                )
            )
        ).all()
    counts = {(kind, status): n for kind, status, n in rows}
    lines = [
        "# HELP compliance_live_sessions Voice Live sessions whose socket this replica holds.",
        "# TYPE compliance_live_sessions gauge",
        f"compliance_live_sessions {len(live)}",
        "# HELP compliance_deliveries Deliveries recorded, by kind and status.",
        "# TYPE compliance_deliveries gauge",
    ]
    for kind in ("phrase", "greeting"):
        for status in Status:
            n = counts.get((kind, status.value), 0)
            lines.append(f'compliance_deliveries{{kind="{kind}",status="{status.value}"}} {n}')
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
