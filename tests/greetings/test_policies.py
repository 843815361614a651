"""Greeting policies through the API: the rules an editor meets, and the trail they leave."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import FastAPI

from service.deliveries.models import Delivery
from service.sessions.models import LiveSession
from tests.greetings.support import (
    URL,
    create_policy,
    generated,
    greeting,
    greeting_events,
    live_session,
    maker,
    policies,
    post_policy,
    pregenerated,
    put_policy,
)
from tests.helpers import Api, assert_problem
from tests.phrases.support import assert_refused, when

POLICY_FIELDS = ("name", "mode", "phrase_key", "instructions", "interruptible", "is_default")


def defaults(items: list[dict[str, object]]) -> list[object]:
    return [p["name"] for p in items if p["is_default"]]


class TestCreatePolicy:
    async def test_pregenerated_policy_may_name_a_phrase_with_no_approved_version(
        self, api: Api
    ) -> None:
        await api.create_phrase("hello")  # no version at all: resolved when the greeting is sent
        response = await post_policy(api, pregenerated())
        assert response.status_code == 201, response.text
        assert response.headers["Location"] == f"{URL}/welcome"
        body = response.json()
        assert {k: body[k] for k in POLICY_FIELDS} == {
            "name": "welcome",
            "mode": "pregenerated",
            "phrase_key": "hello",
            "instructions": None,
            "interruptible": False,
            "is_default": False,
        }
        assert (body["created_by"], body["updated_by"]) == ("alice", "alice")
        assert body["created_at"] == body["updated_at"]
        read = await api.http.get(f"{URL}/welcome", headers=api.as_("agent-1"))
        assert read.status_code == 200
        assert read.json() == body

    async def test_generated_policy_keeps_instructions_up_to_4000_characters(
        self, api: Api
    ) -> None:
        instructions = ("Say hello. " * 364)[:3999] + "!"
        assert len(instructions) == 4000
        body = await create_policy(
            api, generated(instructions=instructions, interruptible=True), who="eve"
        )
        assert body["mode"] == "generated"
        assert body["instructions"] == instructions
        assert body["phrase_key"] is None
        assert body["interruptible"] is True
        assert body["created_by"] == "eve"

    async def test_duplicate_name_is_409(self, api: Api) -> None:
        first = await create_policy(api, generated())
        response = await post_policy(api, generated(instructions="Other words."), who="carol")
        assert_problem(response, 409, "greeting-policy-exists")
        assert await policies(api) == [first]

    async def test_upper_case_name_is_refused_with_the_lower_case_spelling(self, api: Api) -> None:
        for name in ("Welcome", "NONE"):
            problem = assert_refused(
                await post_policy(api, generated(name)), 422, "validation-error", name
            )
            assert f"use {name.lower()!r}" in problem["detail"], problem
        assert await policies(api) == []

    async def test_none_is_reserved(self, api: Api) -> None:
        problem = assert_problem(await post_policy(api, generated("none")), 422, "validation-error")
        assert "reserved" in problem["detail"]
        assert await policies(api) == []

    async def test_malformed_names_are_422(self, api: Api) -> None:
        for name in ("", "-welcome", ".welcome", "wel come", "a/b", "wel@come", "x" * 101):
            assert_refused(await post_policy(api, generated(name)), 422, "validation-error", name)
        longest = "x" * 100
        assert (await create_policy(api, generated(longest)))["name"] == longest
        assert (await create_policy(api, generated("0.a_b-c")))["name"] == "0.a_b-c"

    async def test_fields_that_do_not_fit_the_mode_are_422(self, api: Api) -> None:
        await api.create_phrase("hello")
        cases: list[tuple[dict[str, object], str]] = [
            ({"name": "w", "mode": "pregenerated"}, "needs phrase_key"),
            (pregenerated("w", instructions="Hi."), "leave out instructions"),
            ({"name": "w", "mode": "generated"}, "needs instructions"),
            (generated("w", instructions="   \n"), "needs instructions"),
            (generated("w", phrase_key="hello"), "leave out phrase_key"),
            (generated("w", instructions="x" * 4001), "4000"),
            (generated("w", mode="spoken"), "mode"),
            (generated("w", surprise=True), "surprise"),
        ]
        for body, says in cases:
            problem = assert_refused(await post_policy(api, body), 422, "validation-error", body)
            assert says in problem["detail"], (body, problem["detail"])
        assert await policies(api) == []

    async def test_unknown_phrase_is_422_naming_the_key(self, api: Api) -> None:
        problem = assert_problem(
            await post_policy(api, pregenerated(phrase_key="no-such-phrase")),
            422,
            "unknown-greeting-phrase",
        )
        assert problem["phrase_key"] == "no-such-phrase"
        assert "'no-such-phrase'" in problem["detail"]
        assert await policies(api) == []

    async def test_only_editors_create_policies(self, api: Api) -> None:
        for who in ("bob", "dave", "agent-1", "audrey", "admin"):
            problem = assert_refused(
                await post_policy(api, generated(), who), 403, "forbidden", who
            )
            assert problem["required_roles"] == ["editor"]
        assert_problem(await api.http.post(URL, json=generated()), 401, "unauthenticated")
        assert await policies(api) == []
        assert await greeting_events(api) == []


class TestDefaultPolicy:
    async def test_a_new_default_takes_the_flag_from_the_old_one(self, api: Api) -> None:
        await create_policy(api, generated("first", is_default=True))
        await create_policy(api, generated("plain"))
        assert defaults(await policies(api)) == ["first"]

        second = await create_policy(api, generated("second", is_default=True), who="carol")

        assert second["is_default"] is True
        items = await policies(api)
        assert defaults(items) == ["second"]
        first = next(p for p in items if p["name"] == "first")
        assert first["updated_by"] == "carol"
        assert when(first["updated_at"]) > when(first["created_at"])

    async def test_replacing_a_policy_as_default_clears_the_others(self, api: Api) -> None:
        await create_policy(api, generated("first", is_default=True))
        await create_policy(api, generated("second"))

        response = await put_policy(
            api, "second", {"mode": "generated", "instructions": "Hi.", "is_default": True}
        )

        assert response.status_code == 200, response.text
        assert defaults(await policies(api)) == ["second"]

    async def test_the_cleared_default_is_recorded_in_the_trail(self, api: Api) -> None:
        await create_policy(api, generated("first", is_default=True))
        await create_policy(api, generated("second", is_default=True), who="carol")
        events = await greeting_events(api)
        assert [(e["action"], e["subject_id"], e["principal"]) for e in events] == [
            ("greeting_policy.created", "first", "alice"),
            ("greeting_policy.updated", "first", "carol"),
            ("greeting_policy.created", "second", "carol"),
        ]
        assert events[1]["details"]["is_default"] is False
        assert events[2]["details"]["is_default"] is True

    async def test_defaults_set_at_once_leave_exactly_one(self, api: Api) -> None:
        names = [f"policy-{i}" for i in range(6)]
        responses = await asyncio.gather(
            *(post_policy(api, generated(n, is_default=True)) for n in names)
        )
        assert [r.status_code for r in responses] == [201] * len(names), [r.text for r in responses]
        items = await policies(api)
        assert [p["name"] for p in items] == names
        assert len(defaults(items)) == 1
        # The one left is the last to be written: its creation is the last event.
        events = await greeting_events(api)
        assert defaults(items) == [events[-1]["subject_id"]]


class TestReadPolicies:
    async def test_list_is_ordered_by_name_for_every_role(self, api: Api) -> None:
        for name in ("zeta", "alpha", "mid.1", "mid-1"):
            await create_policy(api, generated(name))
        for who in ("alice", "bob", "agent-1", "audrey", "admin"):
            response = await api.http.get(URL, headers=api.as_(who))
            assert response.status_code == 200, (who, response.text)
            names = [p["name"] for p in response.json()["items"]]
            assert names == ["alpha", "mid-1", "mid.1", "zeta"], who

    async def test_unknown_policy_is_404(self, api: Api) -> None:
        await create_policy(api, generated())
        for name in ("nope", "Welcome", "none"):
            response = await api.http.get(f"{URL}/{name}", headers=api.as_("agent-1"))
            assert_refused(response, 404, "greeting-policy-not-found", name)

    async def test_reading_needs_a_key(self, api: Api) -> None:
        await create_policy(api, generated())
        assert_problem(await api.http.get(URL), 401, "unauthenticated")
        assert_problem(await api.http.get(f"{URL}/welcome"), 401, "unauthenticated")


class TestReplacePolicy:
    async def test_put_replaces_every_field(self, api: Api) -> None:
        await api.create_phrase("hello")
        created = await create_policy(api, generated(interruptible=True, is_default=True))

        response = await put_policy(
            api, "welcome", {"mode": "pregenerated", "phrase_key": "hello"}, who="carol"
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert {k: body[k] for k in POLICY_FIELDS} == {
            "name": "welcome",
            "mode": "pregenerated",
            "phrase_key": "hello",
            "instructions": None,
            "interruptible": False,  # left out: back to the default, not kept
            "is_default": False,
        }
        assert (body["created_by"], body["created_at"]) == ("alice", created["created_at"])
        assert body["updated_by"] == "carol"
        assert when(body["updated_at"]) > when(created["updated_at"])
        assert await policies(api) == [body]

    async def test_put_is_validated_like_post(self, api: Api) -> None:
        await api.create_phrase("hello")
        created = await create_policy(api, generated())
        cases: list[tuple[dict[str, object], str]] = [
            (
                {"mode": "generated", "phrase_key": "hello", "instructions": "Hi."},
                "validation-error",
            ),
            ({"mode": "pregenerated"}, "validation-error"),
            ({"mode": "generated", "instructions": "Hi.", "name": "renamed"}, "validation-error"),
            ({"mode": "pregenerated", "phrase_key": "missing"}, "unknown-greeting-phrase"),
        ]
        for body, slug in cases:
            assert_refused(await put_policy(api, "welcome", body), 422, slug, body)
        assert await policies(api) == [created]

    async def test_unknown_policy_is_404(self, api: Api) -> None:
        response = await put_policy(api, "nope", {"mode": "generated", "instructions": "Hi."})
        assert_problem(response, 404, "greeting-policy-not-found")
        assert await policies(api) == []

    async def test_only_editors_replace(self, api: Api) -> None:
        created = await create_policy(api, generated())
        for who in ("bob", "agent-1", "audrey"):
            response = await put_policy(
                api, "welcome", {"mode": "generated", "instructions": "X"}, who
            )
            assert_refused(response, 403, "forbidden", who)
        assert await policies(api) == [created]

    async def test_put_of_the_same_content_changes_nothing(self, api: Api) -> None:
        created = await create_policy(api, generated())
        same = {k: v for k, v in generated().items() if k != "name"}
        response = await put_policy(api, "welcome", same, who="carol")
        assert response.status_code == 200, response.text
        assert response.json() == created
        assert [e["action"] for e in await greeting_events(api)] == ["greeting_policy.created"]


class TestDeletePolicy:
    async def test_deleted_policy_is_gone(self, api: Api) -> None:
        await create_policy(api, generated("keep"))
        await create_policy(api, generated("drop", is_default=True))

        response = await api.http.delete(f"{URL}/drop", headers=api.as_("carol"))

        assert response.status_code == 204, response.text
        assert response.content == b""
        gone = await api.http.get(f"{URL}/drop", headers=api.as_("alice"))
        assert_problem(gone, 404, "greeting-policy-not-found")
        assert [p["name"] for p in await policies(api)] == ["keep"]
        again = await api.http.delete(f"{URL}/drop", headers=api.as_("carol"))
        assert_problem(again, 404, "greeting-policy-not-found")
        # The name is free again.
        assert (await create_policy(api, generated("drop")))["is_default"] is False

    async def test_only_editors_delete(self, api: Api) -> None:
        created = await create_policy(api, generated())
        for who in ("bob", "agent-1", "audrey"):
            response = await api.http.delete(f"{URL}/welcome", headers=api.as_(who))
            assert_refused(response, 403, "forbidden", who)
        assert await policies(api) == [created]

    async def test_sessions_and_deliveries_keep_the_name_they_recorded(
        self, api: Api, app: FastAPI
    ) -> None:
        await create_policy(api, generated())
        session = live_session(greeting_policy="welcome")
        delivery = greeting(session, status="completed")
        async with maker(app).begin() as db:
            db.add(session)
            await db.flush()
            db.add(delivery)

        response = await api.http.delete(f"{URL}/welcome", headers=api.as_("alice"))

        assert response.status_code == 204, response.text
        async with maker(app)() as db:
            recorded = await db.scalar(
                sa.select(LiveSession.greeting_policy).where(LiveSession.id == session.id)
            )
            delivered = (
                await db.execute(
                    sa.select(Delivery.greeting_policy, Delivery.status).where(
                        Delivery.id == delivery.id
                    )
                )
            ).one()
        assert recorded == "welcome"
        assert tuple(delivered) == ("welcome", "completed")


class TestAuditTrail:
    async def test_each_change_appends_one_event_with_the_fields_after_it(self, api: Api) -> None:
        await api.create_phrase("hello")
        await create_policy(api, generated())
        replaced = await put_policy(
            api,
            "welcome",
            {"mode": "pregenerated", "phrase_key": "hello", "interruptible": True},
            who="carol",
        )
        assert replaced.status_code == 200, replaced.text
        deleted = await api.http.delete(f"{URL}/welcome", headers=api.as_("eve"))
        assert deleted.status_code == 204, deleted.text

        events = await greeting_events(api)

        assert [(e["action"], e["principal"], e["subject_id"]) for e in events] == [
            ("greeting_policy.created", "alice", "welcome"),
            ("greeting_policy.updated", "carol", "welcome"),
            ("greeting_policy.deleted", "eve", "welcome"),
        ]
        after_update = {
            "name": "welcome",
            "mode": "pregenerated",
            "phrase_key": "hello",
            "instructions": None,
            "interruptible": True,
            "is_default": False,
        }
        assert events[0]["details"] == {
            **after_update,
            "mode": "generated",
            "phrase_key": None,
            "instructions": "Greet the caller warmly.",
            "interruptible": False,
        }
        assert events[1]["details"] == after_update
        assert events[2]["details"] == after_update
        verified = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
        assert verified.json()["ok"] is True

    async def test_refused_changes_append_nothing(self, api: Api) -> None:
        await create_policy(api, generated())
        refused = [
            await post_policy(api, generated()),
            await post_policy(api, pregenerated("other", phrase_key="missing")),
            await post_policy(api, generated("other"), who="bob"),
            await put_policy(api, "welcome", {"mode": "pregenerated", "phrase_key": "missing"}),
            await put_policy(api, "nope", {"mode": "generated", "instructions": "Hi."}),
            await api.http.delete(f"{URL}/nope", headers=api.as_("alice")),
        ]
        assert [r.status_code for r in refused] == [409, 422, 403, 422, 404, 404]
        assert [e["action"] for e in await greeting_events(api)] == ["greeting_policy.created"]
