"""Job handlers become Dramatiq actors.

A handler is a plain function of its typed payload that returns the job's
result (or raises). `job_handler` registers it; `declare_actors` turns every
registered handler into an actor on a broker. The actor receives only the
job id: the lifecycle middleware has already claimed the job and hands the
claimed row to the actor through a thread-local.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
import msgspec

from ferry.messages import JOBS_QUEUE
from ferry.schemas import PAYLOAD_TYPES
from ferry.worker.transitions import ClaimedJob

P = TypeVar("P")


class PermanentError(Exception):
    """A failure that another attempt cannot fix: the job fails at once, without retry."""


@dataclass(frozen=True, slots=True)
class Handler:
    job_type: str
    payload_type: type[Any]
    run: Callable[[Any], Any]
    time_limit_ms: int


HANDLERS: dict[str, Handler] = {}
_current = threading.local()


def job_handler(
    job_type: str, *, time_limit_ms: int
) -> Callable[[Callable[[P], Any]], Callable[[P], Any]]:
    def register(run: Callable[[P], Any]) -> Callable[[P], Any]:
        HANDLERS[job_type] = Handler(job_type, PAYLOAD_TYPES[job_type], run, time_limit_ms)
        return run

    return register


def set_current_job(job: ClaimedJob | None) -> None:
    _current.job = job


def current_job() -> ClaimedJob:
    job: ClaimedJob | None = getattr(_current, "job", None)
    if job is None:
        raise RuntimeError("no job was claimed for this message")
    return job


def _actor_fn(handler: Handler) -> Callable[[str], Any]:
    def run_job(job_id: str) -> Any:
        job = current_job()
        payload = msgspec.convert(job.payload, handler.payload_type)
        result = handler.run(payload)
        # Results are stored as JSON: turn structs, tuples and the like into builtins.
        return msgspec.to_builtins(result)

    run_job.__name__ = handler.job_type
    return run_job


def declare_actors(broker: dramatiq.Broker) -> None:
    """Declare one actor per registered handler on `broker` (idempotent)."""
    for handler in HANDLERS.values():
        if handler.job_type in broker.actors:
            continue
        dramatiq.Actor(
            _actor_fn(handler),
            broker=broker,
            actor_name=handler.job_type,
            queue_name=JOBS_QUEUE,
            priority=0,
            options={"time_limit": handler.time_limit_ms},
        )
