"""policy_for_session: which policy a connecting session gets for what it asked."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from service.greetings.errors import GreetingPolicyNotFound
from service.greetings.service import policy_for_session
from tests.greetings.support import create_policy, generated, maker, put_policy
from tests.helpers import Api


async def chosen(app: FastAPI, requested: str | None) -> str | None:
    async with maker(app)() as db:
        policy = await policy_for_session(db, requested)
    return None if policy is None else policy.name


class TestPolicyForSession:
    async def test_nothing_asked_and_no_default_is_no_greeting(
        self, api: Api, app: FastAPI
    ) -> None:
        await create_policy(api, generated("formal"))
        assert await chosen(app, None) is None
        assert await chosen(app, "") is None

    async def test_nothing_asked_gets_the_current_default(self, api: Api, app: FastAPI) -> None:
        await create_policy(api, generated("formal"))
        await create_policy(api, generated("welcome", is_default=True))
        assert await chosen(app, None) == "welcome"
        assert await chosen(app, "") == "welcome"

        moved = await put_policy(
            api, "formal", {"mode": "generated", "instructions": "Hi.", "is_default": True}
        )
        assert moved.status_code == 200, moved.text
        assert await chosen(app, None) == "formal"

    async def test_a_name_gets_that_policy_default_or_not(self, api: Api, app: FastAPI) -> None:
        await create_policy(api, generated("formal"))
        await create_policy(api, generated("welcome", is_default=True))
        async with maker(app)() as db:
            policy = await policy_for_session(db, "formal")
        assert policy is not None
        assert (policy.name, policy.mode, policy.instructions) == (
            "formal",
            "generated",
            "Greet the caller warmly.",
        )

    @pytest.mark.parametrize("spelling", ["none", "None", "NONE"])
    async def test_none_in_any_case_is_no_greeting_even_with_a_default(
        self, api: Api, app: FastAPI, spelling: str
    ) -> None:
        await create_policy(api, generated("welcome", is_default=True))
        assert await chosen(app, spelling) is None

    async def test_an_unknown_name_is_not_found(self, api: Api, app: FastAPI) -> None:
        await create_policy(api, generated("welcome", is_default=True))
        for name in ("nope", "Welcome"):
            with pytest.raises(GreetingPolicyNotFound) as raised:
                await chosen(app, name)
            assert raised.value.status == 404
            assert raised.value.slug == "greeting-policy-not-found"
            assert repr(name) in raised.value.detail
