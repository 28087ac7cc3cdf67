"""Liveness and readiness probes.

Readiness also tells whether this API and the live workers agree on the job types
(`jobTypes`, `ferry.jobs.agreement`), and logs a WARNING the first time it finds each
disagreement. It only reports one: an API is no less able to take jobs because a worker
runs another version of a type, and failing readiness for it would take every API
out of service during a rolling deploy (new APIs beside old workers, or the reverse),
or before the first worker has started.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ferry.api.dependencies import AppRuntime
from ferry.jobs import agreement
from ferry.jobs.registry import REGISTRY, digests
from ferry.migrate import schema_problem
from ferry.observability.metrics import INSTANCE
from ferry.service.schemas import Health

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 2.0
JOB_TYPES = "jobTypes"  # the check that reports, never fails readiness


@get("/health", summary="Liveness", tags=["health"])
async def health() -> Health:
    return Health(status="ok", instance=INSTANCE)


@get(
    "/health/ready",
    summary="Readiness: PostgreSQL (or SQLite) and Redis; whether workers run the same job types",
    tags=["health"],
    responses={503: ResponseSpec(Health, description="`checks` names what is down")},
)
async def ready(runtime: AppRuntime, state: State) -> Response[Health]:
    checks = await asyncio.gather(
        _check_database(runtime.engine),
        _check_redis(runtime.redis),
        _check_job_types(runtime.redis, runtime.settings.redis_namespace, state),
    )
    results = dict(checks)
    healthy = all(
        result in ("ok", "in-process") for name, result in results.items() if name != JOB_TYPES
    )
    return Response(
        Health(status="ok" if healthy else "unavailable", checks=results),
        status_code=200 if healthy else 503,
    )


async def _check_database(engine: AsyncEngine) -> tuple[str, str]:
    name = "postgres" if engine.dialect.name == "postgresql" else engine.dialect.name
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as conn:
            at = await _migration(conn)
    except Exception as exc:
        return name, f"down: {type(exc).__name__}: {exc}"[:300]
    # Every query of an API on a database without its tables fails: not ready.
    return name, schema_problem(at) or "ok"


async def _migration(conn: AsyncConnection) -> str | None:
    """The latest migration applied to the database; None if it has none."""
    if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
        return None
    version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    return None if version is None else str(version)


async def _check_redis(client: aioredis.Redis | None) -> tuple[str, str]:
    if client is None:
        return "broker", "in-process"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await client.ping()
    except Exception as exc:
        return "redis", f"down: {type(exc).__name__}: {exc}"[:300]
    return "redis", "ok"


async def _check_job_types(
    client: aioredis.Redis | None, namespace: str, state: State
) -> tuple[str, str]:
    if client is None:  # the embedded default: one process, one registry
        return JOB_TYPES, "ok"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            workers = await agreement.live_workers(client, namespace)
    except Exception as exc:
        return JOB_TYPES, f"unknown: {type(exc).__name__}: {exc}"[:300]
    ours = state.get("job_type_digests")
    if ours is None:  # the registry is complete once the app is made
        ours = state["job_type_digests"] = digests(REGISTRY)
    found = agreement.disagreements(ours, workers)
    _warn_once(state, found)
    return JOB_TYPES, agreement.summary(found)


def _warn_once(state: State, found: list[agreement.Disagreement]) -> None:
    """A WARNING for each disagreement the first time a probe finds it (again after it
    has gone away), not at every probe."""
    warned: set[tuple[str | None, str]] = state.setdefault("job_types_warned", set())
    for disagreement in found:
        if disagreement.key not in warned:
            log.warning("the API and the workers disagree on the job types: %s", disagreement)
    if warned and not found:
        log.info("the API and the workers agree on the job types again")
    warned.clear()
    warned.update(disagreement.key for disagreement in found)
