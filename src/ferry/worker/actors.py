"""Registered job handlers become Dramatiq actors.

The actor receives only the job id: the lifecycle middleware has already
claimed the job, and the claimed row is the current job of this thread
(`ferry.worker.running`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import dramatiq
import msgspec

from ferry.jobs.context import JobContext
from ferry.jobs.errors import PermanentError
from ferry.jobs.registry import REGISTRY, JobType, use_settings
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings
from ferry.worker.running import RUNNING, current_job, set_result


def _attempt(job_type: JobType, args: tuple[Any, ...]) -> Any:
    result = job_type.run(*args)
    if inspect.isawaitable(result):
        # One loop per attempt, on this thread: correct, not yet many at once.
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class ResultTooLarge(Exception):
    """The handler returned more than MAX_RESULT_BYTES: the attempt fails."""


def _actor_fn(job_type: JobType, max_result_bytes: int) -> Callable[[str], None]:
    def run_job(job_id: str) -> None:
        job = current_job()
        try:
            payload = msgspec.convert(job.payload, job_type.payload_type)
        except msgspec.ValidationError as exc:  # stored before its type changed: never runs
            message = f"the payload does not fit the {job_type.name} type: {exc}"
            raise PermanentError(message) from exc
        ctx = JobContext(job.id, job.tenant_id, job.type, job.attempts, job.max_attempts)
        args = (payload, ctx) if job_type.takes_context else (payload,)
        result = RUNNING.run(job.id, ctx._cancelled, lambda: _attempt(job_type, args))
        # Results are stored as JSON: turn structs, tuples and the like into builtins.
        stored = msgspec.to_builtins(result)
        size = len(msgspec.json.encode(stored))
        if size > max_result_bytes:
            raise ResultTooLarge(
                f"the result is {size:,} bytes; at most {max_result_bytes:,} are stored"
            )
        set_result(stored)  # for the lifecycle (ferry.worker.running)

    run_job.__name__ = job_type.name
    return run_job


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> None:
    """Declare one actor per registered handler on `broker` (idempotent)."""
    use_settings(settings)
    limits = settings.time_limit_overrides
    for job_type in REGISTRY.values():
        if job_type.name in broker.actors:
            continue
        dramatiq.Actor(
            _actor_fn(job_type, settings.max_result_bytes),
            broker=broker,
            actor_name=job_type.name,
            queue_name=JOBS_QUEUE,
            priority=0,
            options={
                "time_limit": limits.get(job_type.name, job_type.time_limit_ms),
                # Failures are expected and recorded on the job (and logged by
                # the lifecycle middleware): no traceback at ERROR for each one.
                "throws": (Exception,),
            },
        )
