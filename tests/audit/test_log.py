"""Each committed audit event is also one structured JSON log line (logger ``service.audit``, the
event under the record attribute ``audit_event``); a change that is rolled back logs nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.audit import service as audit
from service.audit.chain import event_hash
from service.kit.actor import Actor
from service.kit.logs import JsonFormatter
from tests.audit.support import Event, all_events, verify
from tests.helpers import Api, assert_problem


@pytest.fixture
def audit_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="service.audit")
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    entries = []
    for record in caplog.records:
        if record.name == "service.audit":
            entry: dict[str, Any] = record.__dict__["audit_event"]
            entries.append(entry)
    return entries


def same_event(entry: dict[str, Any], event: Event) -> None:
    assert datetime.fromisoformat(entry["at"]) == datetime.fromisoformat(event["at"])
    assert {k: v for k, v in entry.items() if k != "at"} == {
        k: v for k, v in event.items() if k != "at"
    }


def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    result: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return result


class TestCommittedEventsAreLogged:
    async def test_one_line_per_change_carrying_the_event(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        audit_log.clear()
        await api.create_phrase()
        await api.approved_version()  # created, submitted, approved
        events = (await all_events(api))[-4:]
        entries = logged(audit_log)
        assert len(entries) == 4
        for entry, event in zip(entries, events, strict=True):
            same_event(entry, event)
            assert event_hash(entry) == entry["hash"]

    async def test_the_line_is_json_on_one_line(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        audit_log.clear()
        await api.create_phrase(description="two\nlines and ünïcode \N{STUDIO MICROPHONE}")
        records = [r for r in audit_log.records if r.name == "service.audit"]
        assert len(records) == 1
        assert records[0].levelno == logging.INFO
        line = JsonFormatter().format(records[0])
        assert "\n" not in line
        parsed = json.loads(line)
        assert parsed["logger"] == "service.audit"
        assert parsed["level"] == "info"
        event = (await all_events(api))[-1]
        same_event(parsed["audit_event"], event)
        assert parsed["audit_event"]["details"]["description"].startswith("two\nlines")

    async def test_a_transaction_with_several_events_logs_each_once_in_order(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        doc = {
            "format": "compliance-phrases/1",
            "phrases": [
                {
                    "key": key,
                    "title": key,
                    "category": "other",
                    "default_locale": "en-US",
                    "versions": [{"texts": {"en-US": f"{key}."}}],
                }
                for key in ("a-one", "b-two", "c-three")
            ],
        }
        audit_log.clear()
        response = await api.http.post("/v1/phrases/import", json=doc, headers=api.as_("alice"))
        assert response.status_code == 200, response.text
        events = (await all_events(api))[-6:]
        entries = logged(audit_log)
        assert [e["seq"] for e in entries] == [e["seq"] for e in events]
        for entry, event in zip(entries, events, strict=True):
            same_event(entry, event)

    async def test_concurrent_changes_log_every_event_exactly_once(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        before = len(await all_events(api))
        audit_log.clear()
        bodies = [
            {"key": f"phrase-{i:02d}", "title": "t", "category": "other", "default_locale": "en-US"}
            for i in range(25)
        ]
        responses = await asyncio.gather(
            *[api.http.post("/v1/phrases", json=b, headers=api.as_("alice")) for b in bodies]
        )
        assert {r.status_code for r in responses} == {201}
        events = (await all_events(api))[before:]
        entries = sorted(logged(audit_log), key=lambda e: int(e["seq"]))
        assert [e["seq"] for e in entries] == [e["seq"] for e in events]
        for entry, event in zip(entries, events, strict=True):
            same_event(entry, event)


class TestRolledBackChangesAreNotLogged:
    async def test_refused_requests_log_nothing(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        await api.create_phrase()
        await api.create_version()
        audit_log.clear()
        assert_problem(await api.transition("recording", 1, "approve", "bob"), 409)
        assert (await api.transition("recording", 1, "submit", "alice")).status_code == 200
        assert len(logged(audit_log)) == 1
        audit_log.clear()
        assert_problem(await api.transition("recording", 1, "approve", "alice"), 403)
        assert logged(audit_log) == []

    async def test_an_import_rolled_back_after_appending_logs_nothing(
        self, api: Api, audit_log: pytest.LogCaptureFixture
    ) -> None:
        good = {"key": "a-good", "title": "g", "category": "other", "default_locale": "en-US"}
        bad = {**good, "key": "b-bad", "versions": [{"texts": {"fr-FR": "pas de en-US"}}]}
        doc = {"format": "compliance-phrases/1", "phrases": [good, bad]}
        audit_log.clear()
        response = await api.http.post("/v1/phrases/import", json=doc, headers=api.as_("alice"))
        assert_problem(response, 422)
        assert logged(audit_log) == []
        # and the next committed event is logged normally, at the seq the rolled-back one had
        await api.create_phrase()
        (entry,) = logged(audit_log)
        same_event(entry, (await all_events(api))[-1])

    @staticmethod
    async def append_then_fail(app: FastAPI) -> None:
        class Boom(Exception):
            pass

        try:
            async with maker(app).begin() as db:
                await audit.append(db, Actor("tester"), "test.failed", "test", "2")
                raise Boom
        except Boom:
            return
        pytest.fail("the transaction did not fail")

    async def test_rollback_of_an_appended_event_logs_nothing(
        self, api: Api, app: FastAPI, audit_log: pytest.LogCaptureFixture
    ) -> None:
        head = (await verify(api))["head_seq"]
        audit_log.clear()
        async with maker(app)() as db:
            row = await audit.append(db, Actor("tester"), "test.rolled_back", "test", "1")
            assert row.seq == head + 1
            await db.rollback()
        await self.append_then_fail(app)
        assert logged(audit_log) == []
        assert (await verify(api))["head_seq"] == head

        async with maker(app).begin() as db:
            row = await audit.append(db, Actor("tester"), "test.committed", "test", "3")
            assert row.seq == head + 1
        (entry,) = logged(audit_log)
        assert (entry["seq"], entry["action"], entry["key_id"]) == (
            head + 1,
            "test.committed",
            None,
        )
        same_event(entry, (await all_events(api))[-1])
        assert (await verify(api))["ok"] is True

    async def test_a_session_reused_after_rollback_logs_only_what_it_committed(
        self, api: Api, app: FastAPI, audit_log: pytest.LogCaptureFixture
    ) -> None:
        audit_log.clear()
        async with maker(app)() as db:
            await audit.append(db, Actor("tester"), "test.first", "test", "1")
            await db.rollback()
            await audit.append(db, Actor("tester"), "test.second", "test", "2")
            await db.commit()
            await audit.append(db, Actor("tester"), "test.third", "test", "3")
            await db.commit()
        assert [e["action"] for e in logged(audit_log)] == ["test.second", "test.third"]
        events = await all_events(api)
        assert [e["action"] for e in events[-2:]] == ["test.second", "test.third"]
        assert (await verify(api))["ok"] is True
