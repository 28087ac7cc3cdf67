"""The outcome of an attempt: complete, retry with backoff, or fail for good."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from dramatiq.middleware import TimeLimitExceeded

from ferry.db.models import JobStatus, utcnow
from ferry.db.transitions import ClaimedJob
from ferry.jobs.errors import JobAborted, PermanentError
from ferry.worker.outcome import decide


def job(attempts: int, max_attempts: int = 3) -> ClaimedJob:
    return ClaimedJob(uuid.uuid4(), "t", "sleep", {"delayMs": 0}, attempts, max_attempts)


def outcome(claimed: ClaimedJob, result: object = None, exception: BaseException | None = None):  # type: ignore[no-untyped-def]
    return decide(claimed, result, exception, retry_base_ms=1000, retry_cap_ms=4000)


def test_success_completes_with_the_result() -> None:
    done = outcome(job(1), result={"value": 3})
    assert (done.status, done.result, done.error) == (JobStatus.COMPLETED, {"value": 3}, None)


def test_a_failure_with_attempts_left_schedules_a_retry() -> None:
    before = utcnow()
    retry = outcome(job(2), exception=ValueError("flaky"))
    assert retry.status is JobStatus.PENDING
    assert retry.error == "ValueError: flaky"
    assert 1000 <= retry.retry_delay_ms <= 2000  # second attempt failed: base * 2, jittered down
    assert isinstance(retry.next_run_at, datetime)
    assert before + timedelta(milliseconds=999) <= retry.next_run_at


def test_the_last_attempt_fails_for_good() -> None:
    failed = outcome(job(3), exception=ValueError("still flaky"))
    assert (failed.status, failed.next_run_at) == (JobStatus.FAILED, None)


def test_a_permanent_error_fails_at_once() -> None:
    assert outcome(job(1), exception=PermanentError("404")).status is JobStatus.FAILED


def test_errors_are_readable() -> None:
    assert outcome(job(3), exception=TimeLimitExceeded()).error == "time limit exceeded"
    assert outcome(job(3), exception=JobAborted()).error == "aborted"
    assert outcome(job(3), exception=RuntimeError()).error == "RuntimeError"
