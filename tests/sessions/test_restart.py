"""A socket cannot outlive the process that held it: what a previous run left live is ended when
the service starts, with the reason, and nothing vanishes silently."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from service.app import create_app
from service.deliveries.models import Delivery
from service.sessions.models import LiveSession
from service.settings import Settings
from tests.helpers import Api

REASON = "the service restarted while the session was live"


def _delivery(id_: str, status: str) -> Delivery:
    return Delivery(
        id=id_,
        session_id="ses_left",
        kind="phrase",
        phrase_key="recording",
        text="This call is recorded.",
        status=status,
        priority="append",
        interruptible=True,
        requested_by="agent-1",
        requested_at=datetime.now(UTC),
    )


async def _leave_a_live_session(app: FastAPI) -> None:
    async with app.state.sessionmaker.begin() as db:
        db.add(
            LiveSession(
                id="ses_left",
                kind="relay",
                state="live",
                principal="agent-1",
                started_at=datetime.now(UTC),
            )
        )
        # Another replica's session on the same database: its socket is alive elsewhere.
        db.add(
            LiveSession(
                id="ses_elsewhere",
                kind="relay",
                state="live",
                principal="agent-1",
                replica="http://replica-2:8000",
                started_at=datetime.now(UTC),
            )
        )
        await db.flush()
        db.add_all(
            [
                _delivery("dlv_waiting", "queued"),
                _delivery("dlv_playing", "speaking"),
                _delivery("dlv_done", "completed"),
            ]
        )


async def test_a_restart_ends_the_sessions_and_deliveries_the_last_run_left(
    app: FastAPI, api: Api, settings: Settings
) -> None:
    await _leave_a_live_session(app)

    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        pass

    session = (await api.http.get("/v1/sessions/ses_left", headers=api.as_("audrey"))).json()
    assert session["state"] == "closed"
    assert session["end_reason"] == REASON
    listing = await api.http.get("/v1/sessions/ses_left/deliveries", headers=api.as_("audrey"))
    by_id = {d["id"]: d for d in listing.json()["items"]}
    assert by_id["dlv_waiting"]["status"] == "expired"
    assert by_id["dlv_playing"]["status"] == "failed"
    assert by_id["dlv_waiting"]["failure_reason"] == REASON
    assert by_id["dlv_playing"]["failure_reason"] == REASON
    assert by_id["dlv_done"]["status"] == "completed"  # a finished record is never rewritten
    audit = await api.http.get("/v1/audit", headers=api.as_("audrey"), params={"limit": 500})
    actions = [(e["action"], e["subject_id"]) for e in audit.json()["items"]]
    assert ("delivery.expired", "dlv_waiting") in actions
    assert ("delivery.failed", "dlv_playing") in actions
    assert ("session.ended", "ses_left") in actions
    other = await api.http.get("/v1/sessions/ses_elsewhere", headers=api.as_("audrey"))
    assert other.json()["state"] == "live"  # not this replica's to end
    verify = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert verify.json()["ok"] is True
