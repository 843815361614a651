"""Changes made behind the service's back, directly in the database, and how they are found: by
GET /v1/audit/verify and by `compliance-service audit verify`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from service.audit.chain import GENESIS_HASH
from service.audit.models import AuditEvent
from tests.audit.support import (
    Event,
    all_events,
    change_event,
    delete_event,
    disable_append_only,
    insert_forged_event,
    stored_events,
    verify,
)
from tests.helpers import Api, cli_environment, run_cli_async

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ("ok", "checked", "head_seq", "head_hash", "first_bad_seq", "problem")


def contract(result: dict[str, Any]) -> dict[str, Any]:
    """The fields of the public contract. The checkpoint fields are left out: the command line
    checks signatures only with a key it can read (see tests/audit/test_export_verify.py)."""
    return {name: result[name] for name in CONTRACT}


async def cli_verify(database_url: str) -> tuple[int, dict[str, Any]]:
    process = await run_cli_async("audit", "verify", env=cli_environment(database_url), cwd=ROOT)
    stdout, stderr = process.stdout, process.stderr
    try:
        result: dict[str, Any] = json.loads(stdout)
    except ValueError:
        pytest.fail(f"not JSON on stdout: {stdout!r}; stderr: {stderr}")
    return process.returncode, result


async def some_history(api: Api) -> list[Event]:
    await api.create_phrase()
    await api.approved_version()
    await api.create_version(texts={"en-US": "A second wording."})
    events = await all_events(api)
    assert len(events) >= 12
    return events


async def found_at(
    api: Api, database_url: str, seq: int, words: str, *, cli: bool = True
) -> dict[str, Any]:
    """The endpoint (and the command line, unless ``cli`` is False: it takes a second or two to
    start) report ``seq`` as the first bad event."""
    served = await verify(api)
    assert served["ok"] is False, served
    assert served["first_bad_seq"] == seq
    assert served["checked"] == seq - 1
    assert served["head_seq"] == seq - 1
    assert words in served["problem"], served["problem"]
    if not cli:
        return served
    code, printed = await cli_verify(database_url)
    assert code == 1, printed
    assert contract(printed) == contract(served)
    return served


class TestTheDatabaseRefusesChanges:
    async def test_update_and_delete_raise(self, api: Api, attacker: AsyncEngine) -> None:
        before = await stored_events(attacker)
        statements: list[sa.Executable] = [
            sa.update(AuditEvent).where(AuditEvent.seq == 2).values(principal="mallory"),
            sa.update(AuditEvent).values(details={}),
            sa.delete(AuditEvent).where(AuditEvent.seq == 2),
            sa.delete(AuditEvent),
        ]
        if attacker.dialect.name == "postgresql":  # SQLite has no TRUNCATE
            statements.append(sa.text("TRUNCATE audit_events"))
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                async with attacker.begin() as connection:
                    await connection.execute(statement)
        assert await stored_events(attacker) == before
        assert (await verify(api))["ok"] is True

    async def test_inserting_is_still_allowed(self, api: Api, attacker: AsyncEngine) -> None:
        """Append-only, not read-only: the service itself appends with plain INSERTs."""
        events = await stored_events(attacker)
        await api.create_phrase()
        assert len(await stored_events(attacker)) == len(events) + 1


class TestAnIntactChain:
    async def test_endpoint_and_command_line_agree_that_it_is_intact(
        self, api: Api, database_url: str
    ) -> None:
        events = await some_history(api)
        served = await verify(api)
        assert contract(served) == {
            "ok": True,
            "checked": len(events),
            "head_seq": events[-1]["seq"],
            "head_hash": events[-1]["hash"],
            "first_bad_seq": None,
            "problem": None,
        }
        code, printed = await cli_verify(database_url)
        assert code == 0
        assert contract(printed) == contract(served)

    async def test_a_database_without_keys_or_events_has_an_empty_intact_chain(
        self, database_url: str
    ) -> None:
        code, printed = await cli_verify(database_url)
        assert code == 0
        assert printed["ok"] is True
        assert (printed["checked"], printed["head_seq"]) == (0, 0)
        assert printed["head_hash"] == GENESIS_HASH


class TestTamperingIsFound:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("principal", "mallory"),
            ("subject_id", "recording/99"),
            ("action", "version.rejected"),
            ("key_id", None),
            ("details", {"comment": "rewritten"}),
        ],
    )
    async def test_a_changed_row(
        self, api: Api, attacker: AsyncEngine, database_url: str, field: str, value: Any
    ) -> None:
        events = await some_history(api)
        target = next(e for e in events if e["action"] == "version.approved")["seq"]
        await change_event(attacker, target, **{field: value})
        stored = await stored_events(attacker)
        assert stored[target - 1][field] == value  # the change really landed
        cli = field == "principal"
        await found_at(api, database_url, target, f"event {target} was altered", cli=cli)

    async def test_a_changed_time(self, api: Api, attacker: AsyncEngine, database_url: str) -> None:
        events = await some_history(api)
        stored = await stored_events(attacker)
        earlier = stored[4]["at"].replace(microsecond=(stored[4]["at"].microsecond + 1) % 10**6)
        await change_event(attacker, 5, at=earlier)
        assert (await all_events(api))[4]["at"] != events[4]["at"]
        await found_at(api, database_url, 5, "event 5 was altered", cli=False)

    async def test_a_changed_first_row(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        await some_history(api)
        await change_event(attacker, 1, principal="mallory")
        await found_at(api, database_url, 1, "event 1 was altered", cli=False)

    async def test_a_changed_last_row(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        events = await some_history(api)
        last = events[-1]["seq"]
        await change_event(attacker, last, subject_id="elsewhere/1")
        await found_at(api, database_url, last, f"event {last} was altered", cli=False)

    async def test_a_changed_row_with_its_hash_recomputed(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        from service.audit.chain import event_hash

        await some_history(api)
        stored = await stored_events(attacker)
        forged = {**stored[5], "principal": "mallory"}
        await change_event(attacker, 6, principal="mallory", hash=event_hash(forged))
        await found_at(api, database_url, 7, "event 7 does not link to event 6")

    async def test_a_deleted_row(self, api: Api, attacker: AsyncEngine, database_url: str) -> None:
        events = await some_history(api)
        target = next(e for e in events if e["action"] == "version.submitted")["seq"]
        await delete_event(attacker, target)
        assert target not in [e["seq"] for e in await all_events(api)]
        await found_at(api, database_url, target, f"event {target} is missing")

    async def test_a_deleted_first_row(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        await some_history(api)
        await delete_event(attacker, 1)
        await found_at(api, database_url, 1, "event 1 is missing", cli=False)

    async def test_a_deleted_row_with_the_rest_renumbered(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        events = await some_history(api)
        await delete_event(attacker, 4)
        for seq in range(5, events[-1]["seq"] + 1):
            await change_event(attacker, seq, seq=seq - 1)
        assert [e["seq"] for e in await all_events(api)] == list(range(1, len(events)))
        await found_at(api, database_url, 4, "event 4 does not link to event 3")

    async def test_an_inserted_row(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        events = await some_history(api)
        forged = await insert_forged_event(attacker, 6, principal="dave", subject_id="recording/2")
        after = await all_events(api)
        assert len(after) == len(events) + 1
        assert after[5]["hash"] == forged["hash"]
        # The forged event links and hashes correctly; the original event 6, now at 7, does not
        # link to it.
        await found_at(api, database_url, 7, "event 7 does not link to event 6")

    async def test_an_inserted_row_that_does_not_hash(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        events = await some_history(api)
        last = events[-1]
        last_at = (await stored_events(attacker))[-1]["at"]
        async with attacker.begin() as connection:
            await connection.execute(
                sa.insert(AuditEvent).values(
                    seq=last["seq"] + 1,
                    at=last_at,
                    principal="bob",
                    key_id=None,
                    action="version.approved",
                    subject_type="phrase_version",
                    subject_id="recording/2",
                    details={},
                    prev_hash=last["hash"],
                    hash="f" * 64,
                )
            )
        seq = last["seq"] + 1
        await found_at(api, database_url, seq, f"event {seq} was altered")

    @pytest.mark.parametrize(
        ("column", "garbage"),
        [("at", "not a time"), ("at", 20261124), ("details", "{not json")],
    )
    async def test_a_row_that_no_longer_reads(
        self, api: Api, attacker: AsyncEngine, database_url: str, column: str, garbage: object
    ) -> None:
        """Typed columns keep garbage out on PostgreSQL; SQLite stores anything, and verify must
        then name the row instead of failing."""
        await some_history(api)
        statement = sa.text(f"UPDATE audit_events SET {column} = :garbage WHERE seq = 6")
        async with attacker.begin() as connection:
            await disable_append_only(connection)
        if attacker.dialect.name == "postgresql":
            with pytest.raises(sa.exc.DBAPIError):
                async with attacker.begin() as connection:
                    await connection.execute(statement, {"garbage": garbage})
            assert (await verify(api))["ok"] is True
            return
        async with attacker.begin() as connection:
            await connection.execute(statement, {"garbage": garbage})
        await found_at(api, database_url, 6, "event 6 was altered")

    async def test_an_unreadable_row_after_a_gap_reports_the_gap(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        await some_history(api)
        await delete_event(attacker, 4)
        if attacker.dialect.name == "sqlite":
            async with attacker.begin() as connection:
                await connection.execute(sa.text("UPDATE audit_events SET at = 'x' WHERE seq = 5"))
        await found_at(api, database_url, 4, "event 4 is missing", cli=False)

    async def test_the_first_problem_wins(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        await some_history(api)
        await change_event(attacker, 9, principal="mallory")
        await delete_event(attacker, 3)
        await found_at(api, database_url, 3, "event 3 is missing", cli=False)

    async def test_new_events_do_not_hide_the_damage(
        self, api: Api, attacker: AsyncEngine, database_url: str
    ) -> None:
        await some_history(api)
        await change_event(attacker, 4, principal="mallory")
        await api.create_phrase("another")
        assert (await all_events(api))[-1]["subject_id"] == "another"
        await found_at(api, database_url, 4, "event 4 was altered", cli=False)
