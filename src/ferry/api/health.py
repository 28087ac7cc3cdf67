"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from litestar import Response, get
from litestar.openapi import ResponseSpec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.api.dependencies import AppRuntime
from ferry.observability.metrics import INSTANCE
from ferry.service.schemas import Health

CHECK_TIMEOUT_S = 2.0


@get("/health", summary="Liveness", tags=["health"])
async def health() -> Health:
    return Health(status="ok", instance=INSTANCE)


@get(
    "/health/ready",
    summary="Readiness: PostgreSQL (or SQLite) and Redis",
    tags=["health"],
    responses={503: ResponseSpec(Health, description="`checks` names what is down")},
)
async def ready(runtime: AppRuntime) -> Response[Health]:
    checks = await asyncio.gather(_check_database(runtime.engine), _check_redis(runtime.redis))
    results = dict(checks)
    healthy = all(result == "ok" or result == "in-process" for result in results.values())
    return Response(
        Health(status="ok" if healthy else "unavailable", checks=results),
        status_code=200 if healthy else 503,
    )


async def _check_database(engine: AsyncEngine) -> tuple[str, str]:
    name = "postgres" if engine.dialect.name == "postgresql" else engine.dialect.name
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return name, f"down: {type(exc).__name__}: {exc}"[:300]
    return name, "ok"


async def _check_redis(client: aioredis.Redis | None) -> tuple[str, str]:
    if client is None:
        return "broker", "in-process"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await client.ping()
    except Exception as exc:
        return "redis", f"down: {type(exc).__name__}: {exc}"[:300]
    return "redis", "ok"
