"""The Dramatiq middleware that ties messages to job rows.

before a message runs: claim its job (PENDING -> RUNNING) in the tick's batch;
a claim that matches no row (deleted, cancelled, already taken) skips it.
after it ran: record COMPLETED, a scheduled retry (PENDING + nextRunAt) or
FAILED in the tick's batch, and return only once that is committed, so the
ack that follows never runs ahead of the status (group commit).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import dramatiq
from dramatiq.middleware import SkipMessage, TimeLimitExceeded

from ferry.messages import JOBS_QUEUE, job_message
from ferry.models import JobStatus, utcnow
from ferry.worker.backoff import retry_delay_ms
from ferry.worker.runtime import PermanentError, set_current_job
from ferry.worker.transitions import ClaimedJob, Outcome
from ferry.worker.writer import StatusWriter

log = logging.getLogger(__name__)


def decide(job: ClaimedJob, result: Any, exception: BaseException | None) -> Outcome:
    """The outcome of one attempt (pure)."""
    if exception is None:
        return Outcome(job.id, JobStatus.COMPLETED, result=result)
    error = describe(exception)
    if isinstance(exception, PermanentError) or job.attempts >= job.max_attempts:
        return Outcome(job.id, JobStatus.FAILED, error=error)
    delay_ms = retry_delay_ms(job.attempts)
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
    text = str(exception)
    name = type(exception).__name__
    return f"{name}: {text}"[:2000] if text else name


class JobLifecycle(dramatiq.Middleware):
    def __init__(self, writer: StatusWriter) -> None:
        self.writer = writer
        self._claimed: dict[str, ClaimedJob] = {}

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.writer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.writer.stop()

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.queue_name != JOBS_QUEUE:
            return
        job = self.writer.claim(uuid.UUID(message.args[0]))
        if job is None:
            log.info("job %s is no longer PENDING; skipping its message", message.args[0])
            raise SkipMessage()
        self._claimed[message.message_id] = job
        set_current_job(job)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        set_current_job(None)
        job = self._claimed.pop(message.message_id, None)
        if job is None:
            return
        outcome = decide(job, result, exception)
        if not self.writer.finish(outcome):
            log.info("job %s changed while it ran; its outcome was not recorded", job.id)
            return
        if outcome.status is JobStatus.PENDING:
            try:
                broker.enqueue(job_message(str(job.id), job.type), delay=outcome.retry_delay_ms)
            except Exception:
                log.exception("re-enqueue of job %s failed; recovery will re-send it", job.id)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        set_current_job(None)
        self._claimed.pop(message.message_id, None)
