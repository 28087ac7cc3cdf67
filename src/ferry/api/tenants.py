"""Tenants: API keys (created, shown once, and revoked with the admin key) and limits."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Controller, delete, get, post, put
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ferry.api.answers import BODY, TENANT_CHECKED
from ferry.api.auth import key_cache, key_hash, new_key, not_a_tenant_key, require_admin
from ferry.api.dependencies import Caller, Configured, DbSession, Sends
from ferry.db.jobs import NotFound
from ferry.db.models import ApiKey, TenantLimit, utcnow
from ferry.db.pauses import tenant_pauses
from ferry.fields import TENANT_ID_PATTERN
from ferry.jobs.registry import REGISTRY
from ferry.queue.fair.limits import TenantLimits, TenantLimitsOut, limits_of, mirror
from ferry.queue.sender import Sender
from ferry.service import pauses as pauses_service
from ferry.service.schemas import TenantPauses
from ferry.settings import Settings

TenantPath = Annotated[
    str, PathParameter(name="tenant_id", min_length=1, max_length=100, pattern=TENANT_ID_PATTERN)
]


# The key routes check the admin key themselves, whether FERRY_AUTH is on or off.
_ADMIN = [NotAuthorizedException, PermissionDeniedException]


class CreatedKey(msgspec.Struct, rename="camel"):
    key_id: uuid.UUID
    tenant_id: str
    key: str  # shown once: only its hash is stored


class TenantKeyController(Controller):
    path = "/tenants/{tenant_id:str}/keys"
    tags = ["tenants"]  # noqa: RUF012
    guards = [require_admin]  # noqa: RUF012

    @post("/", summary="Create an API key for a tenant (admin key)", raises=_ADMIN)
    async def create_key(self, tenant_id: TenantPath, db_session: DbSession) -> CreatedKey:
        key = new_key()
        row = ApiKey(tenant_id=tenant_id, key_hash=key_hash(key), created_at=utcnow())
        db_session.add(row)
        await db_session.flush()
        return CreatedKey(key_id=row.id, tenant_id=tenant_id, key=key)

    @delete(
        "/{key_id:uuid}",
        summary="Revoke a tenant's API key (admin key)",
        raises=[*_ADMIN, NotFoundException],
    )
    async def revoke_key(
        self, tenant_id: TenantPath, key_id: FromPath[uuid.UUID], db_session: DbSession
    ) -> None:
        revoked = await db_session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiKey.key_hash)
        )
        digest = revoked.scalar_one_or_none()
        if digest is None:
            raise NotFound("API key", key_id)
        key_cache.forget(digest)


class TenantPauseController(Controller):
    path = "/tenants/{tenant_id:str}"
    tags = ["tenants"]  # noqa: RUF012
    guards = [not_a_tenant_key]  # noqa: RUF012

    @post(
        "/pause",
        status_code=200,
        summary="Hold a tenant's jobs, or one job type's, until resumed (admin)",
        raises=TENANT_CHECKED,
    )
    async def pause(
        self,
        tenant_id: TenantPath,
        db_session: DbSession,
        settings: Configured,
        job_type: PausedType = None,
    ) -> TenantPauses:
        await pauses_service.pause(db_session, tenant_id, _registered(job_type))
        # Answered once every worker has read it (they read pauses every heartbeat): from
        # then on none of them starts a held job.
        await asyncio.sleep(_read_by_workers_s(settings))
        return await _pauses_of(db_session, tenant_id)

    @post(
        "/resume",
        status_code=200,
        summary="Lift a tenant's pauses, or one job type's, and send the held jobs (admin)",
        raises=TENANT_CHECKED,
    )
    async def resume(
        self,
        tenant_id: TenantPath,
        db_session: DbSession,
        sender: Sends,
        settings: Configured,
        job_type: PausedType = None,
    ) -> TenantPauses:
        # Sent once every worker has read the pause gone: else they would skip them again.
        after_s = _read_by_workers_s(settings)
        job_type = _registered(job_type)
        resent = await pauses_service.resume(db_session, sender, tenant_id, job_type, after_s)
        return msgspec.structs.replace(await _pauses_of(db_session, tenant_id), resent=resent)


READ_MARGIN_S = 0.5  # a worker's read of the pauses takes a moment too


def _read_by_workers_s(settings: Settings) -> float:
    """How long until every worker has read the pauses as they are now."""
    return settings.heartbeat_ms / 1000 + READ_MARGIN_S


PausedType = Annotated[
    str | None,
    QueryParameter(
        name="type",
        min_length=1,
        max_length=32,
        description="a job type: pause (or resume) only its jobs",
    ),
]


def _registered(job_type: str | None) -> str | None:
    if job_type is not None and job_type not in REGISTRY:
        raise ValidationException(
            f"{job_type!r} is not a job type registered here",
            extra=[{"message": "not a registered job type", "key": "type", "source": "query"}],
        )
    return job_type


async def _pauses_of(session: AsyncSession, tenant_id: str) -> TenantPauses:
    paused, types = await tenant_pauses(session, tenant_id)
    return TenantPauses(tenant_id=tenant_id, paused=paused, paused_types=types)


class TenantLimitsController(Controller):
    path = "/tenants/{tenant_id:str}/limits"
    tags = ["tenants"]  # noqa: RUF012

    @get("/", summary="A tenant's weight, running cap and rate", raises=TENANT_CHECKED)
    async def get_limits(
        self, tenant_id: TenantPath, db_session: DbSession, sender: Sends, principal: Caller
    ) -> TenantLimitsOut:
        principal.check(tenant_id)
        row = await db_session.get(TenantLimit, tenant_id)
        return _out(tenant_id, limits_of(row), sender)

    @put(
        "/",
        summary="Set a tenant's weight, running cap and rate (admin)",
        guards=[not_a_tenant_key],
        raises=[*BODY, *TENANT_CHECKED],
    )
    async def set_limits(
        self,
        tenant_id: TenantPath,
        data: JSONBody[TenantLimits],
        db_session: DbSession,
        sender: Sends,
    ) -> TenantLimitsOut:
        await db_session.merge(
            TenantLimit(
                tenant_id=tenant_id,
                weight=data.weight,
                max_running=data.max_running,
                rate_per_second=data.rate_per_second,
                burst=data.burst,
                retention_completed_ms=data.retention_completed_ms,
                retention_failed_ms=data.retention_failed_ms,
                retention_cancelled_ms=data.retention_cancelled_ms,
                updated_at=utcnow(),
            )
        )
        await db_session.commit()
        if sender.fair is not None:
            # Should this fail, the next recovery pass writes it (it copies every row).
            await anyio.to_thread.run_sync(mirror, sender.fair, [(tenant_id, data)])
        return _out(tenant_id, data, sender)


def _out(tenant_id: str, limits: TenantLimits, sender: Sender) -> TenantLimitsOut:
    return TenantLimitsOut(
        tenant_id=tenant_id,
        weight=limits.weight,
        max_running=limits.max_running,
        rate_per_second=limits.rate_per_second,
        burst=limits.burst,
        enforced=sender.fair is not None,
        retention_completed_ms=limits.retention_completed_ms,
        retention_failed_ms=limits.retention_failed_ms,
        retention_cancelled_ms=limits.retention_cancelled_ms,
    )
