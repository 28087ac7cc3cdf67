"""Job types written exactly as a team writes its own (registered through FERRY_JOBS)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from ferry import JobContext, PermanentError, Retry, job

RETRY_AFTER_MS = 2000  # what `flaky` asks of its second attempt
BLOAT_BYTES = 100 * 1024  # more than the default cap on results (64 KiB)


class Resize(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    url: str
    width: int
    keep_ratio: bool = True


@job("resize", payload=Resize, time_limit_s=60, max_attempts=3)
def resize(payload: Resize, ctx: JobContext) -> dict[str, Any]:
    if payload.width > 10_000:
        raise PermanentError(f"too wide: {payload.width} px")
    return {"url": payload.url, "width": payload.width, "keepRatio": payload.keep_ratio}


class Report(msgspec.Struct, rename="camel"):
    name: str
    sleep_ms: int = 10


@job("report")
async def report(payload: Report, ctx: JobContext) -> dict[str, Any]:
    await asyncio.sleep(payload.sleep_ms / 1000)
    running = asyncio.get_running_loop() is not None
    return {"report": payload.name, "sleptMs": payload.sleep_ms, "onLoop": running}


@job("flaky", max_attempts=3)
def flaky(payload: dict[str, Any], ctx: JobContext) -> dict[str, int]:
    if ctx.attempt == 1:
        raise Retry(after_ms=RETRY_AFTER_MS, reason="not ready yet")
    return {"attempt": ctx.attempt}


@job("bloat", max_attempts=1)
def bloat(payload: dict[str, Any]) -> dict[str, str]:
    return {"blob": "x" * BLOAT_BYTES}


@job("whoami", retry_cap_ms=150)
def whoami(payload: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ctx.log.info("running %s for %s", ctx.job_type, ctx.tenant_id)
    return {
        "jobId": str(ctx.job_id),
        "tenantId": ctx.tenant_id,
        "jobType": ctx.job_type,
        "attempt": ctx.attempt,
        "maxAttempts": ctx.max_attempts,
        "aborted": ctx.aborted,
    }
