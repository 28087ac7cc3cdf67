"""`Idempotency-Key` on job creation: a retried request creates nothing twice.

The key is claimed in the same transaction that creates the jobs: a concurrent
request with the same key waits on the primary key until the first commits,
then finds its jobs. A key lives 24 hours; an expired one is taken afresh.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ferry.db.engine import skipping_insert
from ferry.db.models import IdempotencyKey, utcnow

KEY_TTL = timedelta(hours=24)
# Fields a create request gained after keys were first stored: while a job leaves them
# unset (null), they are left out of the hash, so that its request hashes as it did
# before they existed (a key used across an upgrade, or on an API of the previous
# version during a rolling deploy, still matches). Set, they are in it.
LATER_FIELDS = ("retryBaseMs", "retryCapMs", "runAt", "priority")


class KeyReused(Exception):
    """The key was used with a different request."""


@dataclass(frozen=True, slots=True)
class Earlier:
    """The jobs the first request with this key created."""

    job_ids: list[uuid.UUID]


def request_hash(encoded_request: bytes) -> str:
    """The digest of a create request (one job, or a batch `{jobs}`) as the API decoded
    and encoded it: every field of every job, LATER_FIELDS only when set."""
    request: Any = msgspec.json.decode(encoded_request)
    if isinstance(request, dict):
        jobs = request.get("jobs") if "type" not in request else [request]
        for job in jobs if isinstance(jobs, list) else []:
            for field in LATER_FIELDS:
                if isinstance(job, dict) and field in job and job[field] is None:
                    del job[field]
        encoded_request = msgspec.json.encode(request)
    return hashlib.sha256(encoded_request).hexdigest()


async def claim(session: AsyncSession, tenant_id: str, key: str, digest: str) -> Earlier | None:
    """None: the key is ours, create the jobs (then `remember` them). Earlier: it was
    used before with this request. Raises KeyReused if with another request."""
    now = utcnow()
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < now - KEY_TTL,
        )
    )
    insert = skipping_insert(session.get_bind().dialect.name)
    inserted = await session.execute(
        insert(IdempotencyKey)
        .values(tenant_id=tenant_id, key=key, request_hash=digest, job_ids=[], created_at=now)
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.key)
    )
    if inserted.first() is not None:
        return None
    earlier = (
        await session.execute(
            select(IdempotencyKey).where(
                IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
            )
        )
    ).scalar_one()
    if earlier.request_hash != digest:
        raise KeyReused(key)
    return Earlier([uuid.UUID(job_id) for job_id in earlier.job_ids])


async def remember(
    session: AsyncSession, tenant_id: str, key: str, job_ids: list[uuid.UUID]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key)
        .values(job_ids=[str(job_id) for job_id in job_ids])
    )
