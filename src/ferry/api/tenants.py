"""Tenant API keys: created (shown once) and revoked with the admin key."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, post
from litestar.params import FromPath, PathParameter
from sqlalchemy import update

from ferry.api.jobs import DbSession
from ferry.auth import key_cache, key_hash, new_key, require_admin
from ferry.models import ApiKey, utcnow
from ferry.schemas import TENANT_ID_PATTERN
from ferry.store import NotFound

TenantPath = Annotated[
    str, PathParameter(name="tenant_id", min_length=1, max_length=100, pattern=TENANT_ID_PATTERN)
]


class CreatedKey(msgspec.Struct, rename="camel"):
    key_id: uuid.UUID
    tenant_id: str
    key: str  # shown once: only its hash is stored


class TenantKeyController(Controller):
    path = "/tenants/{tenant_id:str}/keys"
    tags = ["tenants"]  # noqa: RUF012
    guards = [require_admin]  # noqa: RUF012

    @post("/", summary="Create an API key for a tenant (admin key)")
    async def create_key(self, tenant_id: TenantPath, db_session: DbSession) -> CreatedKey:
        key = new_key()
        row = ApiKey(tenant_id=tenant_id, key_hash=key_hash(key), created_at=utcnow())
        db_session.add(row)
        await db_session.flush()
        return CreatedKey(key_id=row.id, tenant_id=tenant_id, key=key)

    @delete("/{key_id:uuid}", summary="Revoke a tenant's API key (admin key)")
    async def revoke_key(
        self, tenant_id: FromPath[str], key_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> None:
        revoked = await db_session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiKey.key_hash)
        )
        digest = revoked.scalar_one_or_none()
        if digest is None:
            raise NotFound(key_id)
        key_cache.forget(digest)
