"""What the audit tests share: reading the whole trail through the API, and the attacker's tools
for changing the audit table behind the service's back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from service.audit.chain import event_hash
from service.audit.models import AuditEvent
from service.audit.service import event_dict
from tests.helpers import Api

Event = dict[str, Any]


async def all_events(api: Api, *, limit: int = 500, **filters: Any) -> list[Event]:
    """Every event matching ``filters``, following ``next_cursor`` to the end."""
    events: list[Event] = []
    params: dict[str, Any] = {"limit": limit, **filters}
    while True:
        response = await api.http.get("/v1/audit", params=params, headers=api.as_("audrey"))
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["items"])
        if page["next_cursor"] is None:
            return events
        params["cursor"] = page["next_cursor"]


async def verify(api: Api) -> Event:
    response = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert response.status_code == 200, response.text
    result: Event = response.json()
    return result


async def key_ids(api: Api) -> dict[str, str]:
    """principal -> id of that principal's (only) API key."""
    response = await api.http.get("/v1/api-keys", headers=api.as_("admin"))
    assert response.status_code == 200, response.text
    return {k["principal"]: k["id"] for k in response.json()["items"]}


# --- the attacker: direct access to the database with the owner's rights ------------------------


async def disable_append_only(connection: AsyncConnection) -> None:
    """What an attacker holding the table owner's rights does first."""
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
    else:
        await connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_update"))
        await connection.execute(sa.text("DROP TRIGGER IF EXISTS audit_events_no_delete"))


async def stored_events(engine: AsyncEngine) -> list[Event]:
    """The rows as stored, typed by the ORM (times tz-aware, details decoded)."""
    async with AsyncSession(engine) as session:
        rows = (await session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq))).all()
        return [event_dict(row) for row in rows]


async def change_event(engine: AsyncEngine, target: int, **values: Any) -> None:
    """Set ``values`` on the event ``target`` (``seq`` included: renumbering)."""
    async with engine.begin() as connection:
        await disable_append_only(connection)
        await connection.execute(
            sa.update(AuditEvent).where(AuditEvent.seq == target).values(**values)
        )


async def delete_event(engine: AsyncEngine, seq: int) -> None:
    async with engine.begin() as connection:
        await disable_append_only(connection)
        await connection.execute(sa.delete(AuditEvent).where(AuditEvent.seq == seq))


async def insert_forged_event(engine: AsyncEngine, seq: int, **values: Any) -> Event:
    """Insert a well-formed event at ``seq`` (linked to its predecessor, correctly hashed), moving
    the events from ``seq`` on one place up, as an attacker hiding an insertion would."""
    events = await stored_events(engine)
    previous = events[seq - 2]
    forged: Event = {
        **previous,
        "seq": seq,
        "action": "version.approved",
        "details": {"comment": "forged"},
        **values,
        "prev_hash": previous["hash"],
    }
    forged["hash"] = event_hash(forged)
    async with engine.begin() as connection:
        await disable_append_only(connection)
        for later in sorted((e["seq"] for e in events if e["seq"] >= seq), reverse=True):
            await connection.execute(
                sa.update(AuditEvent).where(AuditEvent.seq == later).values(seq=later + 1)
            )
        await connection.execute(sa.insert(AuditEvent).values(**forged))
    return forged
