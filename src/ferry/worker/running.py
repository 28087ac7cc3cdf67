"""The jobs this process runs: the current one of each worker thread, and how to
interrupt each running job (so that a cancelled job can be aborted)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
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
    """Which jobs run in this process, and how to interrupt each, so that a cancelled
    job can be aborted: a sync handler's thread gets JobAborted raised in it, an async
    handler's task is cancelled (`ferry.worker.async_jobs`).

    A job is registered only while its handler runs, and registering,
    unregistering and aborting share one lock: an abort can never land in a
    thread that has moved on to Dramatiq's ack or to another job.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Per job: the event its handler's ctx.aborted reads, and its interrupt.
        self._jobs: dict[uuid.UUID, tuple[threading.Event, Callable[[], object]]] = {}

    def ids(self) -> list[uuid.UUID]:
        with self._lock:
            return list(self._jobs)

    def abort(self, job_ids: set[uuid.UUID]) -> list[uuid.UUID]:
        aborted = []
        with self._lock:
            for job_id in job_ids & self._jobs.keys():
                cancelled, interrupt = self._jobs[job_id]
                cancelled.set()
                interrupt()
                aborted.append(job_id)
        return aborted

    @contextmanager
    def running(
        self, job_id: uuid.UUID, cancelled: threading.Event, interrupt: Callable[[], object]
    ) -> Iterator[None]:
        """While in the block, `job_id` runs: an abort sets `cancelled` and calls
        `interrupt()` (under this registry's lock: it must not block)."""
        with self._lock:
            self._jobs[job_id] = (cancelled, interrupt)
        try:
            yield
        finally:
            with self._lock:
                del self._jobs[job_id]

    def run(self, job_id: uuid.UUID, cancelled: threading.Event, fn: Callable[[], Any]) -> Any:
        """`fn()` on this thread as the job's: an abort raises JobAborted in it."""
        interrupt = partial(raise_thread_exception, threading.get_ident(), JobAborted)
        with self.running(job_id, cancelled, interrupt):
            return fn()


RUNNING = RunningJobs()
