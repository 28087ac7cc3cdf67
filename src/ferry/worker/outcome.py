"""How an attempt ended, decided from what its handler returned or raised (pure)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dramatiq.middleware import TimeLimitExceeded

from ferry.db.models import JobStatus, utcnow
from ferry.db.transitions import ERROR_LIMIT, ClaimedJob, Outcome
from ferry.jobs.errors import JobAborted, PermanentError, Retry
from ferry.text import storable
from ferry.worker.backoff import retry_delay_ms


def decide(
    job: ClaimedJob,
    result: Any,
    exception: BaseException | None,
    *,
    retry_base_ms: int,
    retry_cap_ms: int,
) -> Outcome:
    """The outcome of one attempt (pure)."""
    if exception is None:
        return Outcome(job.id, JobStatus.COMPLETED, result=result)
    error = describe(exception)
    if isinstance(exception, PermanentError) or job.attempts >= job.max_attempts:
        return Outcome(job.id, JobStatus.FAILED, error=error)
    if isinstance(exception, Retry):
        delay_ms = exception.after_ms
    else:
        delay_ms = retry_delay_ms(job.attempts, base_ms=retry_base_ms, cap_ms=retry_cap_ms)
    return Outcome(
        job.id,
        JobStatus.PENDING,
        error=error,
        next_run_at=utcnow() + timedelta(milliseconds=delay_ms),
        retry_delay_ms=delay_ms,
    )


def describe(exception: BaseException) -> str:
    if isinstance(exception, TimeLimitExceeded):
        return "time limit exceeded"
    if isinstance(exception, JobAborted):
        return "aborted"
    text = str(exception)
    name = type(exception).__name__
    return storable(f"{name}: {text}", ERROR_LIMIT) if text else name
