"""Async handlers: many at once on one event loop per worker process, not a thread each.

The worker thread that claimed an async job does not wait for it: the actor
hands the job's coroutine over (`hand_over`), the lifecycle starts it here and
the thread moves on to its next message. The job runs as a task on this
process's job loop, under its type's time limit, and a cancel reaches it while
it awaits (its task is cancelled). When it ends, its outcome is recorded like
any other (`done`, on a few threads of its own: recording a retry waits for the
commit). At most `limit` run at once: past that, a worker thread waits for a
free slot before it claims its next async job, as it would wait for a long sync
job; messages it fetched wait with it (a tenant's `maxRunning` caps its share of
the slots, as of the threads).

A handler that blocks (time.sleep, CPU-bound work, a sync client) holds up every
async job of its process: such work belongs in a sync handler.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import TimeLimitExceeded

from ferry.jobs.errors import JobAborted
from ferry.observability.logs import job_ids
from ferry.worker.loop import BackgroundLoop
from ferry.worker.running import RunningJobs

log = logging.getLogger(__name__)

Done = Callable[[Any, BaseException | None], None]  # (what it returned, what it raised)
RECORDERS = 4  # threads recording outcomes: a retry's waits for its commit


@dataclass(frozen=True, slots=True)
class AsyncRun:
    """An async job's attempt, handed from its actor to the lifecycle."""

    job_id: uuid.UUID
    tenant_id: str
    cancelled: threading.Event  # what its ctx.aborted reads
    start: Callable[[], Awaitable[Any]]  # calls the handler
    time_limit_ms: int
    keep: Callable[[Any], Any]  # what is stored of its return value (may raise)


# Set by the actor of an async type on its worker thread, taken by the lifecycle's
# after_process_message on the same thread.
_handed: ContextVar[AsyncRun | None] = ContextVar("ferry_async_run", default=None)


def hand_over(run: AsyncRun) -> None:
    _handed.set(run)


def take_handover() -> AsyncRun | None:
    run = _handed.get()
    _handed.set(None)
    return run


class Slot:
    """One of the process's async job slots, released once (by whichever side ends up
    owning it: the job's task, or the lifecycle when no task was started)."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class AsyncJobs:
    def __init__(self, limit: int, running: RunningJobs) -> None:
        self.running = running
        self.loop = BackgroundLoop("ferry-async-jobs")
        self._slots = threading.BoundedSemaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()  # a reference keeps each alive
        # Outcomes are recorded here, not on the loop's default executor: handlers use
        # that one (asyncio.to_thread), and recording a retry waits for its commit.
        self._recorders = ThreadPoolExecutor(RECORDERS, thread_name_prefix="ferry-async-outcomes")
        self._active = 0  # started and not yet recorded: what a drain waits for
        self._ended = threading.Condition()

    def start_loop(self) -> None:
        """Start the job loop (at worker boot, when some registered type is async)."""
        self.loop.start()

    def reserve(self) -> Slot:
        """Wait for a free slot (on a worker thread, before it claims an async job)."""
        self._slots.acquire()
        return Slot(self._slots.release)

    def start(self, run: AsyncRun, slot: Slot, done: Done) -> None:
        """Run `run` on the job loop, then `done(kept result, exception)` on a recorder
        thread; `slot` is released when the handler has ended."""
        with self._ended:
            self._active += 1
        self.loop.loop.call_soon_threadsafe(self._spawn, run, slot, done)

    def _spawn(self, run: AsyncRun, slot: Slot, done: Done) -> None:
        task = asyncio.create_task(self._run(run, slot, done), name=f"job {run.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, run: AsyncRun, slot: Slot, done: Done) -> None:
        job_ids.set((str(run.job_id), run.tenant_id))  # this task's log records
        try:
            result, exception = await self._attempt(run)
        except BaseException:  # the loop is stopping: the job is left to recovery
            self._recorded()
            raise
        finally:
            slot.release()
        # Handed off, not awaited: nothing that happens to this task can lose it.
        self._recorders.submit(self._record, run.job_id, done, result, exception)

    def _record(
        self, job_id: uuid.UUID, done: Done, result: Any, exception: BaseException | None
    ) -> None:
        try:
            done(result, exception)
        except Exception:
            log.exception("recording the outcome of job %s failed", job_id)
        finally:
            self._recorded()

    def _recorded(self) -> None:
        with self._ended:
            self._active -= 1
            self._ended.notify_all()

    async def _attempt(self, run: AsyncRun) -> tuple[Any, BaseException | None]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        attempting = True

        def cancel() -> None:
            # On the loop, so this reads `attempting` as the task left it: an abort that
            # arrives as the attempt ends never cancels what follows it.
            if attempting:
                task.cancel()

        with self.running.running(
            run.job_id, run.cancelled, lambda: loop.call_soon_threadsafe(cancel)
        ):
            limit = asyncio.timeout(run.time_limit_ms / 1000)
            try:
                async with limit:
                    returned = await run.start()
                return run.keep(returned), None
            except TimeoutError as exc:
                # Only the limit's own expiry is a time limit; a TimeoutError the handler
                # raised is an error like any other.
                return None, TimeLimitExceeded() if limit.expired() else exc
            except asyncio.CancelledError:
                if not run.cancelled.is_set():
                    raise  # the loop is stopping: the job is left to recovery
                return None, JobAborted()
            except BaseException as exc:  # a handler's SystemExit is its job's failure too
                return None, exc
            finally:
                attempting = False

    def drain(self, timeout: float) -> None:
        """Wait (from a thread) until the running async jobs have ended and their outcomes
        are handed on, at most `timeout` seconds; then stop the loop. A job still running
        then stays RUNNING: recovery hands it back once its lease expires."""
        with self._ended:
            if not self._ended.wait_for(lambda: self._active == 0, timeout):
                log.warning("%d async jobs still running at shutdown", self._active)
        self.loop.stop()
        self._recorders.shutdown(wait=False)
