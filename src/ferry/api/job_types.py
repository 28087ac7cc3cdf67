"""`GET /job-types`: the job types this deployment runs, for clients in any language."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get

from ferry.api.dependencies import AppRuntime
from ferry.jobs.registry import REGISTRY, JobType, backoff_ms
from ferry.settings import Settings


class JobTypeOut(msgspec.Struct, rename="camel"):
    name: str
    payload_schema: dict[str, Any]  # JSON Schema of the payload
    time_limit_ms: int
    max_attempts: int  # unless a job says otherwise
    retry_base_ms: int  # backoff: base * 2^(attempt-1), capped, jittered
    retry_cap_ms: int


@get("/job-types", summary="The registered job types and their payloads", tags=["jobs"])
async def job_types(runtime: AppRuntime) -> list[JobTypeOut]:
    return [_out(job_type, runtime.settings) for job_type in REGISTRY.values()]


def _out(job_type: JobType, settings: Settings) -> JobTypeOut:
    base_ms, cap_ms = backoff_ms(job_type.name, settings)
    return JobTypeOut(
        name=job_type.name,
        payload_schema=msgspec.json.schema(job_type.payload_type),
        time_limit_ms=settings.time_limit_overrides.get(job_type.name, job_type.time_limit_ms),
        max_attempts=job_type.max_attempts or settings.default_max_attempts,
        retry_base_ms=base_ms,
        retry_cap_ms=cap_ms,
    )
