"""What a handler is told about the job it runs."""

from __future__ import annotations

import logging
import numbers
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ferry.text import storable

MESSAGE_LIMIT = 200  # characters of a progress message that are kept

# Where `progress` goes: (job id, attempt, fraction, message). The worker gives its
# coalescing buffer (`ferry.worker.progress`); a context made elsewhere (a unit
# test, say) drops the reports.
ProgressSink = Callable[[uuid.UUID, int, float, str | None], None]


def _dropped(job_id: uuid.UUID, attempt: int, fraction: float, message: str | None) -> None:
    pass


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: uuid.UUID
    tenant_id: str
    job_type: str
    attempt: int  # 1 for the first
    max_attempts: int
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _progress_sink: ProgressSink = field(default=_dropped, repr=False)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job has got: `fraction` from 0 to 1, and a short `message`
        (at most 200 characters are kept). Subscribers of the tenant get a PROGRESS event
        and the job's `progress` and `progressMessage` show it. Cheap: call it as often
        as you like, from any thread; the latest report of each tick is the one sent."""
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
            kind = type(fraction).__name__
            raise TypeError(f"progress: the fraction must be a number from 0 to 1, not {kind}")
        value = float(fraction)
        if not 0.0 <= value <= 1.0:  # NaN too: it compares false
            raise ValueError(
                f"progress: the fraction must be a finite number from 0 to 1, not {fraction!r}"
            )
        if message is not None:
            if not isinstance(message, str):
                kind = type(message).__name__
                raise TypeError(f"progress: the message must be a string or None, not {kind}")
            # Cut first: storable() keeps the length, so a long message costs no more.
            message = storable(message[: MESSAGE_LIMIT + 1], MESSAGE_LIMIT)
        self._progress_sink(self.job_id, self.attempt, value, message)

    @property
    def aborted(self) -> bool:
        """Whether the job was cancelled while it runs: a long handler checks it and
        returns early (a sync handler is also interrupted at its next bytecode)."""
        return self._cancelled.is_set()

    @property
    def log(self) -> logging.Logger:
        """A logger whose lines carry the job's and its tenant's ids (as all lines of a
        worker thread running a job do)."""
        return logging.getLogger(f"ferry.jobs.{self.job_type}")
