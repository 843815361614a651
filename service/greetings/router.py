from __future__ import annotations

from fastapi import APIRouter, Response

from service.access.dependencies import AnyRole, Editor
from service.greetings import service
from service.greetings.schemas import (
    GreetingPolicyCreate,
    GreetingPolicyList,
    GreetingPolicyRead,
    GreetingPolicyUpdate,
)
from service.kit.db import DB

router = APIRouter(prefix="/v1/greeting-policies", tags=["greetings"])


@router.post("", status_code=201, operation_id="create_greeting_policy")
async def create_greeting_policy(
    body: GreetingPolicyCreate, caller: Editor, db: DB, response: Response
) -> GreetingPolicyRead:
    policy = await service.create_policy(db, caller.actor, body)
    response.headers["Location"] = f"/v1/greeting-policies/{policy.name}"
    return GreetingPolicyRead.model_validate(policy)


@router.get("", operation_id="list_greeting_policies")
async def list_greeting_policies(caller: AnyRole, db: DB) -> GreetingPolicyList:
    policies = await service.list_policies(db)
    return GreetingPolicyList(items=[GreetingPolicyRead.model_validate(p) for p in policies])


@router.get("/{name}", operation_id="get_greeting_policy")
async def get_greeting_policy(name: str, caller: AnyRole, db: DB) -> GreetingPolicyRead:
    return GreetingPolicyRead.model_validate(await service.get_policy(db, name))


@router.put("/{name}", operation_id="replace_greeting_policy")
async def replace_greeting_policy(
    name: str, body: GreetingPolicyUpdate, caller: Editor, db: DB
) -> GreetingPolicyRead:
    policy = await service.replace_policy(db, caller.actor, name, body)
    return GreetingPolicyRead.model_validate(policy)


@router.delete(
    "/{name}", status_code=204, operation_id="delete_greeting_policy", response_class=Response
)
async def delete_greeting_policy(name: str, caller: Editor, db: DB) -> None:
    await service.delete_policy(db, caller.actor, name)
