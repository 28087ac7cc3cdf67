"""The Dramatiq middleware that ties messages to job rows.

before a message runs: claim its job (PENDING -> RUNNING) in the tick's batch;
a claim that matches no row (deleted, cancelled, already taken) skips it.
after it ran: record COMPLETED, a scheduled retry (PENDING + nextRunAt) or
FAILED in the tick's batch. The ack never runs ahead of the status (group
commit): on Redis the thread moves on at once and the message's ack is held
until the write commits (`ferry.worker.acks`); a retry, and the in-process
broker, wait for the commit on the thread.

On worker boot it starts the process's background loop: the writer (which
appends each tick's events to the event log), the heartbeat (leases and
aborts) and the recovery pass.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

import dramatiq
import redis.asyncio as aioredis
from dramatiq.middleware import SkipMessage, TimeLimitExceeded
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db import create_engine
from ferry.fairness.broker import FairRedisBroker
from ferry.fairness.feeder import Feeder
from ferry.logs import job_ids
from ferry.messages import JOBS_QUEUE, job_message, tenant_of
from ferry.metrics import INSTANCE, RedisMetricsStore, flush, flush_every, recorder
from ferry.models import JobStatus, utcnow
from ferry.realtime.log import Committed, EventLog
from ferry.realtime.redis_log import RedisEventLog
from ferry.redis_client import connect
from ferry.settings import Settings
from ferry.text import storable
from ferry.worker.acks import AckHold, GroupAckRedisBroker
from ferry.worker.backoff import retry_delay_ms
from ferry.worker.heartbeat import Heartbeat, keep_alive
from ferry.worker.loop import BackgroundLoop
from ferry.worker.malloc import limit_arenas
from ferry.worker.recovery import Recovery
from ferry.worker.runtime import (
    RUNNING,
    JobAborted,
    PermanentError,
    set_current_job,
    take_current_job,
)
from ferry.worker.transitions import ERROR_LIMIT, ClaimedJob, Outcome
from ferry.worker.writer import StatusWriter

log = logging.getLogger(__name__)
GIL_SWITCH_INTERVAL_S = 0.001
SETTLE_TIMEOUT_S = 10


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


class JobLifecycle(dramatiq.Middleware):
    def __init__(self, settings: Settings, events: EventLog | None = None) -> None:
        """`events`: where committed transitions go; by default the Redis event log
        when Ferry runs on Redis (the embedded app passes its in-memory one)."""
        self.settings = settings
        self.loop = BackgroundLoop()
        self._engine: AsyncEngine | None = None
        self._redis: aioredis.Redis | None = None
        self.events = events
        self.metrics: RedisMetricsStore | None = None
        self.writer = StatusWriter(
            self.loop,
            self.engine,
            batch_size=settings.batch_size,
            tick_ms=settings.batch_tick_ms,
            on_commit=self.publish,
        )
        self.recovery: Recovery | None = None
        self.feeder: Feeder | None = None  # on the fair broker
        self._started = threading.local()  # when the running job of a thread was claimed

    def engine(self) -> AsyncEngine:
        if self._engine is None:
            # No pre-ping: a round trip per checkout would double the tick, and
            # the writer retries a batch that hit a dead connection anyway.
            self._engine = create_engine(self.settings, pool_size=6, pre_ping=False)
        return self._engine

    async def publish(self, committed: list[Committed]) -> None:
        if self.events is not None:
            await self.events.append(committed)

    # -- worker lifecycle ------------------------------------------------------------

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Each job hands off twice between its thread and the I/O loop (claim,
        # outcome); at the default 5 ms GIL switch interval a handoff can wait
        # that long behind a busy thread. 1 ms roughly doubles a worker's
        # throughput (measured: bench/drain.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        limit_arenas()
        if self.settings.redis_url:
            # On this process's event loop: the event log, metrics and the feeder.
            self._redis = connect(self.settings.redis_url)
        if self.events is None and self._redis is not None:
            self.events = RedisEventLog(
                self._redis,
                self.settings.redis_namespace,
                retain=self.settings.event_history,
                ttl_s=self.settings.event_history_ttl_s,
            )
            # A worker process of its own: its metrics join the deployment's in Redis.
            self.metrics = RedisMetricsStore(self._redis, self.settings.redis_namespace, INSTANCE)
            self.loop.add_service(partial(flush_every, recorder, self.metrics))
        if isinstance(broker, FairRedisBroker) and self._redis is not None:
            self.feeder = Feeder(
                broker.fair,
                self._redis,
                lease_ms=self.settings.lease_ms,
                heartbeat_ms=self.settings.heartbeat_ms,
            )
            self.loop.add_service(self.feeder.run)
        if isinstance(broker, GroupAckRedisBroker) and self._redis is not None:
            alive = (
                self._redis,
                broker.heartbeats_key,
                broker.broker_id,
                self.settings.heartbeat_ms,
            )
            self.loop.add_service(partial(keep_alive, *alive))
        self.recovery = Recovery(self.engine, broker, self.settings, self.events)
        self.loop.add_service(self.writer.run)
        self.loop.add_service(self.writer.publish_events)
        self.loop.add_service(Heartbeat(self.engine, RUNNING, self.settings.heartbeat_ms).run)
        self.loop.add_service(self.recovery.run)
        self.loop.on_stop(self._close)
        self.loop.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # The worker threads are done; outcomes they left to the writer are written
        # (and their acks released) before the loop stops.
        self.writer.settle(timeout=SETTLE_TIMEOUT_S)
        self.loop.stop()

    async def _close(self) -> None:
        if self.metrics is not None:
            await flush(recorder, self.metrics)
        if self._engine is not None:
            await self._engine.dispose()
        if self._redis is not None:
            await self._redis.aclose()

    # -- messages --------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        if message.queue_name != JOBS_QUEUE:
            return
        job = self.writer.claim(uuid.UUID(message.args[0]))
        if job is None:
            log.debug("job %s is no longer PENDING; skipping its message", message.args[0])
            raise SkipMessage()
        # Due when sent, or at its eta if delayed (both ms since the epoch).
        due_ms = max(message.message_timestamp, message.options.get("eta", 0))
        recorder.observe(
            "ferry_job_queue_wait_seconds", max(0.0, time.time() - due_ms / 1000), job.type
        )
        if self.feeder is not None:
            self.feeder.started(job.tenant_id, message.options["redis_message_id"])
        # Dramatiq runs the actor and after_process_message on this same thread.
        set_current_job(job)
        job_ids.set((str(job.id), job.tenant_id))  # on this thread's log records
        self._started.at = time.monotonic()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        job = take_current_job()
        if job is None:
            return
        try:
            outcome = self._outcome(job, result, exception)
        except BaseException:
            self._release(message)  # nothing will be recorded: free the slot now
            raise
        finally:
            job_ids.set(None)
        if outcome.status is not JobStatus.PENDING and isinstance(broker, GroupAckRedisBroker):
            # The thread moves on to its next message; the ack waits for the commit.
            hold = broker.hold_ack(message)
            self.writer.finish_then(outcome, partial(self._recorded, job, message, hold))
            return
        # A retry waits: its next attempt is sent only once this one is recorded.
        recorded = self.writer.finish(outcome)
        self._recorded(job, message, None, recorded)
        if recorded is JobStatus.PENDING:
            try:
                broker.enqueue(
                    job_message(str(job.id), job.type, job.tenant_id), delay=outcome.retry_delay_ms
                )
            except Exception:
                log.exception("re-enqueue of job %s failed; recovery will re-send it", job.id)

    def _outcome(self, job: ClaimedJob, result: Any, exception: BaseException | None) -> Outcome:
        outcome = decide(
            job,
            result,
            exception,
            retry_base_ms=self.settings.retry_base_ms,
            retry_cap_ms=self.settings.retry_cap_ms,
        )
        recorder.observe(
            "ferry_job_duration_seconds", time.monotonic() - self._started.at, job.type
        )
        if exception is not None:
            log.warning(
                "job %s (%s) attempt %d/%d: %s -> %s",
                job.id, job.type, job.attempts, job.max_attempts, outcome.error, outcome.status,
            )  # fmt: skip
        return outcome

    def _recorded(
        self, job: ClaimedJob, message: Any, hold: AckHold | None, recorded: JobStatus | None
    ) -> None:
        """Once the outcome is written: count it, free the tenant's slot, let the ack go."""
        try:
            if recorded is None:
                log.info("job %s changed while it ran; its outcome was not recorded", job.id)
            elif recorded is JobStatus.PENDING:
                recorder.inc("ferry_job_retries", job.tenant_id, job.type)
            else:
                recorder.inc("ferry_jobs_finished", job.tenant_id, job.type, recorded)
            self._release(message)
        finally:
            if hold is not None:
                hold.release()

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        set_current_job(None)
        self._release(message)

    def _release(self, message: Any) -> None:
        """The message is done with: its tenant's slot (if capped) is free again."""
        tenant = tenant_of(message)
        if self.feeder is not None and tenant is not None:
            self.feeder.finished(tenant, message.options["redis_message_id"])
