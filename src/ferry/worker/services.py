"""The background services of a worker process, in the shape of Dramatiq's own
`AsyncIO` middleware: started on worker boot on one event loop thread, stopped
after the worker threads are done.

They are the status writer (which appends each tick's events to the event log),
the job loop of async handlers (`ferry.worker.async_jobs`, a loop of its own),
the heartbeat (leases and aborts), the recovery pass, the scheduler, the
dispatcher of parked jobs, the broker's keep-alive, the fair feeder and the
metrics flush.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

import dramatiq
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.events.log import Committed, EventLog
from ferry.events.redis_log import RedisEventLog
from ferry.jobs.registry import REGISTRY
from ferry.observability.metrics import INSTANCE, RedisMetricsStore, flush, flush_every, recorder
from ferry.queue.fair.broker import fair_queue
from ferry.queue.fair.feeder import Feeder
from ferry.queue.group_ack import GroupAckRedisBroker
from ferry.queue.sender import Sender
from ferry.redis_client import connect
from ferry.settings import Settings
from ferry.worker.async_jobs import AsyncJobs
from ferry.worker.bundles import Durations
from ferry.worker.claims_ahead import ClaimsAhead
from ferry.worker.dispatcher import Dispatcher
from ferry.worker.heartbeat import Heartbeat, keep_alive
from ferry.worker.loop import BackgroundLoop
from ferry.worker.malloc import limit_arenas
from ferry.worker.pauses import Pauses
from ferry.worker.progress import PROGRESS
from ferry.worker.recovery import Recovery
from ferry.worker.running import RUNNING
from ferry.worker.scheduler import Scheduler
from ferry.worker.writer import StatusWriter

SETTLE_TIMEOUT_S = 10
ASYNC_DRAIN_TIMEOUT_S = 600  # as long as Dramatiq waits for its threads' jobs
PAUSES_READ_TIMEOUT_S = 10

log = logging.getLogger(__name__)


class WorkerServices(dramatiq.Middleware):
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
            progress=PROGRESS,  # what the actors' contexts report into
        )
        self.recovery: Recovery | None = None
        self.feeder: Feeder | None = None  # on the fair broker
        self.async_jobs = AsyncJobs(settings.async_jobs_per_worker, RUNNING)
        self.pauses = Pauses()  # the tenants and job types held, read every heartbeat
        self.claims = ClaimsAhead(self.writer, pauses=self.pauses)  # fed by the consumers
        self.durations = Durations()  # of each job type's jobs: how many go to a message

    def engine(self) -> AsyncEngine:
        if self._engine is None:
            # No pre-ping: a round trip per checkout would double the tick, and
            # the writer retries a batch that hit a dead connection anyway.
            self._engine = create_engine(self.settings, pool_size=6, pre_ping=False)
        return self._engine

    async def publish(self, committed: list[Committed]) -> None:
        if self.events is not None:
            await self.events.append(committed)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        limit_arenas()
        if self.settings.redis_url:
            # On this process's event loop: the event log, metrics and the feeder.
            self._redis = connect(self.settings.redis_url)
        if self._redis is not None:
            self._start_redis_services(broker, self._redis)
        if isinstance(broker, GroupAckRedisBroker):
            self.claims.threads = worker.worker_threads
            broker.fetch_hooks = self.claims
        self.recovery = Recovery(self.engine, broker, self.settings, self.events)
        self.loop.add_service(self.writer.run)
        self.loop.add_service(self.writer.publish_events)
        heartbeat = Heartbeat(self.engine, RUNNING, self.settings.heartbeat_ms, self.claims)
        self.loop.add_service(heartbeat.run)
        self.loop.add_service(self.recovery.run)
        sender = Sender(broker, self._redis)
        self.loop.add_service(Scheduler(self.engine, sender, self.events, self.settings).run)
        self.loop.add_service(Dispatcher(self.engine, sender).run)
        heartbeat_s = self.settings.heartbeat_ms / 1000
        self.loop.add_service(partial(self.pauses.run, self.engine, heartbeat_s))
        self.loop.on_stop(self._close)
        self.loop.start()
        self._read_pauses()
        if any(job_type.is_async for job_type in REGISTRY.values()):
            self.async_jobs.start_loop()

    def _read_pauses(self) -> None:
        """Before the threads take any message: a paused job must not start at boot."""
        reading = asyncio.run_coroutine_threadsafe(self.pauses.read(self.engine), self.loop.loop)
        try:
            reading.result(timeout=PAUSES_READ_TIMEOUT_S)
        except Exception:
            log.exception("reading the pauses at boot failed; they are read every heartbeat")

    def _start_redis_services(self, broker: dramatiq.Broker, redis: aioredis.Redis) -> None:
        settings = self.settings
        if self.events is None:
            self.events = RedisEventLog(
                redis,
                settings.redis_namespace,
                retain=settings.event_history,
                ttl_s=settings.event_history_ttl_s,
                mark_ttl_ms=settings.event_mark_ttl_ms,
                per_message=settings.events_per_message,
            )
            # A worker process of its own: its metrics join the deployment's in Redis.
            self.metrics = RedisMetricsStore(redis, settings.redis_namespace, INSTANCE)
            self.loop.add_service(partial(flush_every, recorder, self.metrics))
        if (fair := fair_queue(broker)) is not None:
            self.feeder = Feeder(
                fair,
                redis,
                lease_ms=settings.lease_ms,
                heartbeat_ms=settings.heartbeat_ms,
                short=self.durations.short,
            )
            self.loop.add_service(self.feeder.run)
        if isinstance(broker, GroupAckRedisBroker):
            alive = (redis, broker.heartbeats_key, broker.broker_id, settings.heartbeat_ms)
            self.loop.add_service(partial(keep_alive, *alive, settings.redis_namespace))

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # The consumers fetch until the threads are done: no job is claimed for a thread
        # that will not take it.
        self.claims.stopping = True

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # The worker threads are done; the async jobs they started end (each within its
        # time limit), then every outcome left to the writer is written (and its ack
        # released) before the loop stops.
        self.async_jobs.drain(timeout=ASYNC_DRAIN_TIMEOUT_S)
        self.writer.settle(timeout=SETTLE_TIMEOUT_S)
        self.loop.stop()

    async def _close(self) -> None:
        if self.metrics is not None:
            await flush(recorder, self.metrics)
        if self._engine is not None:
            await self._engine.dispose()
        if self._redis is not None:
            await self._redis.aclose()
