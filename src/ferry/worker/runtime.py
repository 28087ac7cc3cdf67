"""Job handlers become Dramatiq actors.

A handler is a plain function of its typed payload that returns the job's
result (or raises). `job_handler` registers it; `declare_actors` turns every
registered handler into an actor on a broker. The actor receives only the
job id: the lifecycle middleware has already claimed the job and hands the
claimed row to the actor through a thread-local.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
import msgspec
from dramatiq.threading import raise_thread_exception

from ferry.messages import JOBS_QUEUE
from ferry.schemas import PAYLOAD_TYPES
from ferry.settings import Settings
from ferry.worker.transitions import ClaimedJob

P = TypeVar("P")


class PermanentError(Exception):
    """A failure that another attempt cannot fix: the job fails at once, without retry."""


class JobAborted(BaseException):  # like KeyboardInterrupt: not caught by `except Exception`
    """Raised into the thread of a job that was cancelled while it ran."""


@dataclass(frozen=True, slots=True)
class Handler:
    job_type: str
    payload_type: type[Any]
    run: Callable[[Any], Any]
    time_limit_ms: int


HANDLERS: dict[str, Handler] = {}
_current = threading.local()
_settings: Settings | None = None


def worker_settings() -> Settings:
    """The settings of the broker this process's actors were declared on."""
    if _settings is None:
        raise RuntimeError("no Ferry broker is installed in this process")
    return _settings


def job_handler(
    job_type: str, *, time_limit_ms: int
) -> Callable[[Callable[[P], Any]], Callable[[P], Any]]:
    def register(run: Callable[[P], Any]) -> Callable[[P], Any]:
        HANDLERS[job_type] = Handler(job_type, PAYLOAD_TYPES[job_type], run, time_limit_ms)
        return run

    return register


def set_current_job(job: ClaimedJob | None) -> None:
    _current.job = job


def take_current_job() -> ClaimedJob | None:
    """The job claimed for this thread's message, forgotten as it is handed over."""
    job: ClaimedJob | None = getattr(_current, "job", None)
    _current.job = None
    return job


def current_job() -> ClaimedJob:
    job: ClaimedJob | None = getattr(_current, "job", None)
    if job is None:
        raise RuntimeError("no job was claimed for this message")
    return job


class RunningJobs:
    """Which thread runs which job, so that a cancelled job can be aborted.

    A thread is registered only while its handler runs, and registering,
    unregistering and aborting share one lock: an abort can never land in a
    thread that has moved on to Dramatiq's ack or to another job.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[int, uuid.UUID] = {}

    def ids(self) -> list[uuid.UUID]:
        with self._lock:
            return list(self._by_thread.values())

    def abort(self, job_ids: set[uuid.UUID]) -> list[uuid.UUID]:
        aborted = []
        with self._lock:
            for thread_id, job_id in self._by_thread.items():
                if job_id in job_ids:
                    raise_thread_exception(thread_id, JobAborted)  # type: ignore[no-untyped-call]
                    aborted.append(job_id)
        return aborted

    def run(self, job_id: uuid.UUID, fn: Callable[[], Any]) -> Any:
        thread_id = threading.get_ident()
        with self._lock:
            self._by_thread[thread_id] = job_id
        try:
            return fn()
        finally:
            with self._lock:
                del self._by_thread[thread_id]


RUNNING = RunningJobs()


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
    global _settings
    _settings = settings
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
