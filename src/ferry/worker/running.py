"""The jobs this process runs: the current one of each worker thread, and which thread
runs which job (so that a cancelled job can be aborted)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from dramatiq.threading import raise_thread_exception

from ferry.db.transitions import ClaimedJob
from ferry.jobs.errors import JobAborted

# Set by the lifecycle middleware before a message runs; Dramatiq runs the actor and
# after_process_message on the same thread, so in the same context.
_current: ContextVar[ClaimedJob | None] = ContextVar("ferry_current_job", default=None)


def set_current_job(job: ClaimedJob | None) -> None:
    _current.set(job)


def take_current_job() -> ClaimedJob | None:
    """The job claimed for this thread's message, forgotten as it is handed over."""
    job = _current.get()
    _current.set(None)
    return job


# What the handler returned, for the lifecycle: not returned through Dramatiq, which
# would log a warning for every value without its Results middleware.
_result: ContextVar[Any] = ContextVar("ferry_job_result", default=None)


def set_result(value: Any) -> None:
    _result.set(value)


def take_result() -> Any:
    value = _result.get()
    _result.set(None)
    return value


def current_job() -> ClaimedJob:
    job = _current.get()
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
        # Per thread: its job, and the event its handler's ctx.aborted reads.
        self._by_thread: dict[int, tuple[uuid.UUID, threading.Event]] = {}

    def ids(self) -> list[uuid.UUID]:
        with self._lock:
            return [job_id for job_id, _ in self._by_thread.values()]

    def abort(self, job_ids: set[uuid.UUID]) -> list[uuid.UUID]:
        aborted = []
        with self._lock:
            for thread_id, (job_id, cancelled) in self._by_thread.items():
                if job_id in job_ids:
                    cancelled.set()
                    raise_thread_exception(thread_id, JobAborted)  # type: ignore[no-untyped-call]
                    aborted.append(job_id)
        return aborted

    def run(self, job_id: uuid.UUID, cancelled: threading.Event, fn: Callable[[], Any]) -> Any:
        """`fn()` as the job's: `cancelled` is set if the job is aborted meanwhile."""
        thread_id = threading.get_ident()
        with self._lock:
            self._by_thread[thread_id] = (job_id, cancelled)
        try:
            return fn()
        finally:
            with self._lock:
                del self._by_thread[thread_id]


RUNNING = RunningJobs()
