"""Registered job handlers become Dramatiq actors.

The actor receives only the job id: the lifecycle middleware has already
claimed the job, and the claimed row is the current job of this thread
(`ferry.worker.running`). A sync handler runs on the worker thread; an async
one is handed over to the process's job loop (`ferry.worker.async_jobs`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import dramatiq
import msgspec

from ferry.jobs.context import JobContext
from ferry.jobs.errors import PermanentError
from ferry.jobs.registry import REGISTRY, JobType, use_settings
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings
from ferry.worker.async_jobs import AsyncRun, hand_over
from ferry.worker.progress import PROGRESS
from ferry.worker.running import RUNNING, current_job, set_result


class ResultTooLarge(Exception):
    """The handler returned more than MAX_RESULT_BYTES: the attempt fails."""


def kept(result: Any, max_bytes: int) -> Any:
    """What is stored of a handler's return value: JSON builtins (structs, tuples and the
    like turned into them), at most `max_bytes` of it."""
    stored = msgspec.to_builtins(result)
    size = len(msgspec.json.encode(stored))
    if size > max_bytes:
        raise ResultTooLarge(f"the result is {size:,} bytes; at most {max_bytes:,} are stored")
    return stored


def _sync_attempt(job_type: JobType, args: tuple[Any, ...]) -> Any:
    result = job_type.run(*args)
    if inspect.isawaitable(result):  # a plain function that returned an awaitable
        return asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _actor_fn(
    job_type: JobType, time_limit_ms: int, max_result_bytes: int
) -> Callable[[str], None]:
    keep = partial(kept, max_bytes=max_result_bytes)

    def run_job(job_id: str) -> None:
        job = current_job()
        try:
            payload = msgspec.convert(job.payload, job_type.payload_type)
        except msgspec.ValidationError as exc:  # stored before its type changed: never runs
            message = f"the payload does not fit the {job_type.name} type: {exc}"
            raise PermanentError(message) from exc
        report = PROGRESS.report  # drained by the status writer
        ctx = JobContext(
            job.id, job.tenant_id, job.type, job.attempts, job.max_attempts, _progress_sink=report
        )
        args = (payload, ctx) if job_type.takes_context else (payload,)
        if job_type.is_async:
            start = partial(job_type.run, *args)
            hand_over(AsyncRun(job.id, job.tenant_id, ctx._cancelled, start, time_limit_ms, keep))
            return
        result = RUNNING.run(job.id, ctx._cancelled, lambda: _sync_attempt(job_type, args))
        set_result(keep(result))  # for the lifecycle (ferry.worker.running)

    run_job.__name__ = job_type.name
    return run_job


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> None:
    """Declare one actor per registered handler on `broker` (idempotent)."""
    use_settings(settings)
    limits = settings.time_limit_overrides
    for job_type in REGISTRY.values():
        if job_type.name in broker.actors:
            continue
        time_limit_ms = limits.get(job_type.name, job_type.time_limit_ms)
        dramatiq.Actor(
            _actor_fn(job_type, time_limit_ms, settings.max_result_bytes),
            broker=broker,
            actor_name=job_type.name,
            queue_name=JOBS_QUEUE,
            priority=0,
            options={
                # An async handler's limit is kept by its task (ferry.worker.async_jobs).
                "time_limit": time_limit_ms,
                # Failures are expected and recorded on the job (and logged by
                # the lifecycle middleware): no traceback at ERROR for each one.
                "throws": (Exception,),
            },
        )
