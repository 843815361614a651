from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request

from service.access import service
from service.access.cache import after_commit, key_cache
from service.access.dependencies import Admin
from service.access.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyRead
from service.kit.db import DB

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


@router.post("", status_code=201, operation_id="create_api_key")
async def create_api_key(body: ApiKeyCreate, caller: Admin, db: DB) -> ApiKeyCreated:
    row, plain = await service.create_key(
        db, caller.actor, principal=body.principal, roles=body.roles, name=body.name
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(row).model_dump(), "key": plain}
    )


@router.get("", operation_id="list_api_keys")
async def list_api_keys(caller: Admin, db: DB) -> ApiKeyList:
    return ApiKeyList(items=[ApiKeyRead.model_validate(k) for k in await service.list_keys(db)])


@router.delete("/{key_id}", operation_id="revoke_api_key")
async def revoke_api_key(key_id: str, caller: Admin, db: DB, request: Request) -> ApiKeyRead:
    row = await service.revoke_key(db, caller.actor, key_id)
    # Stops working here the moment the revocation commits; elsewhere within the cache's bound.
    after_commit(db, partial(key_cache(request.app.state).forget, row.key_hash))
    return ApiKeyRead.model_validate(row)
