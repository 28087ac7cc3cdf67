"""Tenant limits: kept in PostgreSQL (the truth), mirrored into Redis for `fair.lua`.

The API writes a tenant's row, then its Redis hash; the recovery pass writes
every row to Redis again each time it runs, so a failed write or a Redis
that lost its data heals within one pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.db.models import TenantLimit
from ferry.queue.fair.queue import FairQueue

MAX_WEIGHT = 1000
RetentionMs = Annotated[int, msgspec.Meta(ge=1, le=10 * 365 * 86_400_000)]  # up to 10 years


class TenantLimits(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    """A tenant's share: `weight` turns per round, at most `maxRunning` jobs at once,
    at most `ratePerSecond` jobs started per second with bursts of `burst` (default 1)."""

    weight: Annotated[int, msgspec.Meta(ge=1, le=MAX_WEIGHT)] = 1
    max_running: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None
    rate_per_second: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] | None = None
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    # How long its finished jobs are kept (null: the deployment's RETENTION_*).
    retention_completed_ms: RetentionMs | None = None
    retention_failed_ms: RetentionMs | None = None
    retention_cancelled_ms: RetentionMs | None = None


class TenantLimitsOut(msgspec.Struct, rename="camel"):
    tenant_id: str
    weight: int
    max_running: int | None
    rate_per_second: float | None
    burst: int | None
    # False when nothing enforces them: the embedded default or FAIR_SCHEDULING=false.
    enforced: bool
    retention_completed_ms: int | None = None
    retention_failed_ms: int | None = None
    retention_cancelled_ms: int | None = None


def limits_of(row: Any) -> TenantLimits:
    """The limits of a `tenant_limits` row (or of its columns); defaults without one."""
    if row is None:
        return TenantLimits()
    return TenantLimits(
        row.weight,
        row.max_running,
        row.rate_per_second,
        row.burst,
        row.retention_completed_ms,
        row.retention_failed_ms,
        row.retention_cancelled_ms,
    )


def redis_fields(limits: TenantLimits) -> dict[str, Any]:
    """The hash `fair.lua` reads (defaults left out: no cap, no rate, weight 1)."""
    fields: dict[str, Any] = {}
    if limits.weight != 1:
        fields["weight"] = limits.weight
    if limits.max_running is not None:
        fields["max_running"] = limits.max_running
    if limits.rate_per_second is not None:
        fields["rate"] = limits.rate_per_second
        fields["burst"] = limits.burst or 1
    return fields


async def all_limits(conn: AsyncConnection) -> list[tuple[str, TenantLimits]]:
    rows = await conn.execute(select(TenantLimit))
    return [(row.tenant_id, limits_of(row)) for row in rows]


def mirror(fair: FairQueue, limits: Iterable[tuple[str, TenantLimits]]) -> None:
    """Blocking: write the limits to Redis."""
    fair.set_limits((tenant, redis_fields(item)) for tenant, item in limits)
