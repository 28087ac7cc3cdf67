"""Registered job handlers become Dramatiq actors.

The actor receives only the job id: the lifecycle middleware has already
claimed the job, and the claimed row is the current job of this thread
(`ferry.worker.running`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import msgspec

from ferry.jobs.errors import PermanentError
from ferry.jobs.registry import HANDLERS, Handler, use_settings
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings
from ferry.worker.running import RUNNING, current_job


def _actor_fn(handler: Handler) -> Callable[[str], Any]:
    def run_job(job_id: str) -> Any:
        job = current_job()
        try:
            payload = msgspec.convert(job.payload, handler.payload_type)
        except msgspec.ValidationError as exc:  # stored before its type changed: never runs
            message = f"the payload does not fit the {handler.job_type} type: {exc}"
            raise PermanentError(message) from exc
        result = RUNNING.run(job.id, lambda: handler.run(payload))
        # Results are stored as JSON: turn structs, tuples and the like into builtins.
        return msgspec.to_builtins(result)

    run_job.__name__ = handler.job_type
    return run_job


def declare_actors(broker: dramatiq.Broker, settings: Settings) -> None:
    """Declare one actor per registered handler on `broker` (idempotent)."""
    use_settings(settings)
    limits = settings.time_limit_overrides
    for handler in HANDLERS.values():
        if handler.job_type in broker.actors:
            continue
        dramatiq.Actor(
            _actor_fn(handler),
            broker=broker,
            actor_name=handler.job_type,
            queue_name=JOBS_QUEUE,
            priority=0,
            options={
                "time_limit": limits.get(handler.job_type, handler.time_limit_ms),
                # Failures are expected and recorded on the job (and logged by
                # the lifecycle middleware): no traceback at ERROR for each one.
                "throws": (Exception,),
            },
        )
