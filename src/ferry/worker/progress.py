"""The progress that running jobs report (`ctx.progress`), coalesced until the writer's tick.

A handler may report as often as it likes, from any thread or event loop: each
report only replaces its job's latest one here, under a lock. The status writer
drains what is here once per tick and stores it in one statement
(`ferry.worker.writer`), so 10,000 reports of a job between two ticks cost one
row of one statement. The first report after a drain tells the writer, which may
be waiting for work.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterable

from ferry.db.transitions import ProgressReport


def _nothing() -> None:
    pass


class ProgressBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[uuid.UUID, ProgressReport] = {}
        # Called (outside the lock) when a report arrives in an empty buffer: the
        # writer's wake (`StatusWriter.wake`), set by the writer that drains it.
        self.on_first: Callable[[], None] = _nothing

    @property
    def pending(self) -> bool:
        """Whether reports wait (read without the lock: a hint, as `queue.empty()` is)."""
        return bool(self._latest)

    def report(self, job_id: uuid.UUID, attempt: int, fraction: float, message: str | None) -> None:
        """The job's latest progress (`JobContext.progress` has checked it)."""
        report = ProgressReport(job_id, attempt, fraction, message)
        with self._lock:
            first = not self._latest
            self._latest[job_id] = report
        if first:
            # A stopped writer's loop (shutdown) refuses the wake: a report is no failure.
            with contextlib.suppress(RuntimeError):
                self.on_first()

    def holds_any(self, job_ids: Iterable[uuid.UUID]) -> bool:
        """Whether a report of one of these jobs waits."""
        with self._lock:
            return any(job_id in self._latest for job_id in job_ids)

    def drain(self) -> list[ProgressReport]:
        """The latest report of each job, taken out."""
        with self._lock:
            latest, self._latest = self._latest, {}
        return list(latest.values())


# The process's buffer: the actors report into it, its status writer drains it (as
# `ferry.worker.running.RUNNING` is the process's running jobs).
PROGRESS = ProgressBuffer()
