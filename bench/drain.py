"""One worker-drain measurement, run in a fresh process: `python -m bench.drain SCENARIO ...`.

N messages wait in the queue before the clock starts; the clock stops when a
Dramatiq worker of 1 process (8 threads unless said) has processed all of them.
- bare:  a no-op actor on plain Dramatiq (Redis broker, default middleware);
         bare-T with T threads;
- path-T: a no-op actor on Ferry's broker as a worker has it (acks in groups,
         Dramatiq's TimeLimit its only middleware; one FIFO queue), T threads:
         the path of one message per job alone, with no database, events or
         fairness around it;
- naive: the seeds' per-job design: UPDATE RUNNING, PUBLISH, UPDATE COMPLETED,
         PUBLISH, each its own round trip (asyncpg pool of 8, one per thread);
- ferry-T: Ferry's worker with T threads: `sleep` jobs of 0 ms from PENDING to
         COMPLETED through the batching lifecycle middleware, every event published,
         fed through the tenants' queues (fair scheduling, the default);
- fifo-T: the same with FAIR_SCHEDULING off (one shared first-in-first-out queue);
- processes-P: Ferry's worker as `just worker` runs it, `dramatiq actors` with P
         worker processes of 32 threads (`WORKER_PROCESSES=P`); the jobs are sent
         once the workers fetch (their boot is not timed), the clock stops when
         PostgreSQL holds all N COMPLETED.
Prints one JSON line: jobs/s, SQL statements per job, Redis event round trips; for
bare, path, ferry and fifo also the CPU time per job (ms) of this process (the
worker once the messages are sent) and of the whole machine, until the last
message was processed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import uuid
from typing import Any

import asyncpg
import dramatiq
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker

from bench.cpu import Spent
from bench.realtime import wait_for_consumer
from bench.services import REDIS_URL, log_directory, plain
from ferry.db.jobs import Enqueued
from ferry.db.models import JobStatus, new_job_id
from ferry.events.redis_log import RedisEventLog
from ferry.queue.brokers import build_broker
from ferry.queue.sender import Sender
from ferry.settings import Settings
from ferry.worker.boot import install
from ferry.worker.services import WorkerServices
from tests.support.processes import ferry_env, worker_process

THREADS = 8


def insert_pending(
    database_url: str, n: int, tenant: str = "bench", job_type: str = "sleep"
) -> list[uuid.UUID]:
    ids = [new_job_id() for _ in range(n)]

    async def run() -> None:
        conn = await asyncpg.connect(plain(database_url))
        try:
            await conn.executemany(
                "INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,"
                " created_at, updated_at, next_run_at) VALUES ($1, $2, $3, '{\"delayMs\": 0}',"
                " 'PENDING', 0, 5, now(), now(), now())",
                [(job_id, tenant, job_type) for job_id in ids],
            )
        finally:
            await conn.close()

    asyncio.run(run())
    return ids


def wait_for(condition: Any, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench: the drain did not finish")
        time.sleep(0.002)


def drain(
    broker: dramatiq.Broker, done: Any, threads: int = THREADS, spent: Spent | None = None
) -> float:
    """Seconds until `done()`; `spent` runs as long as the clock (not the worker's stop)."""
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads)
    if spent is not None:
        spent.start()
    start = time.perf_counter()
    worker.start()
    wait_for(done)
    elapsed = time.perf_counter() - start
    if spent is not None:
        spent.stop()
    worker.stop()
    return elapsed


def this_worker() -> Spent:
    """This process, the worker of a drain once its messages are sent, and the machine."""
    return Spent(worker=os.getpid())


def bare(n: int, namespace: str, threads: int = THREADS) -> dict[str, Any]:
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)  # type: ignore[no-untyped-call]
    return noop_drain(broker, n, threads)


def path(n: int, namespace: str, threads: int) -> dict[str, Any]:
    settings = Settings(redis_url=REDIS_URL, redis_namespace=namespace, fair_scheduling=False)
    return noop_drain(build_broker(settings), n, threads)


def noop_drain(broker: dramatiq.Broker, n: int, threads: int) -> dict[str, Any]:
    """N messages of a no-op actor queued on `broker`, then drained."""
    processed = [0]
    lock = threading.Lock()

    def noop(job_id: str) -> None:
        with lock:
            processed[0] += 1

    actor = dramatiq.Actor(
        noop, broker=broker, actor_name="noop", queue_name="bench", priority=0, options={}
    )
    for _ in range(n):
        actor.send(str(uuid.uuid4()))
    spent = this_worker()
    elapsed = drain(broker, lambda: processed[0] >= n, threads, spent)
    return {
        "jobs_per_s": n / elapsed,
        "statements_per_job": 0.0,
        "event_round_trips_per_job": 0.0,
        **spent.ms_per(n),
    }


def naive(n: int, namespace: str, database_url: str) -> dict[str, Any]:
    ids = insert_pending(database_url, n)
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)  # type: ignore[no-untyped-call]
    actor = naive_actor(broker, database_url)
    for job_id in ids:
        actor.send(str(job_id))
    elapsed = drain(broker, lambda: actor.done[0] >= n)  # type: ignore[attr-defined]
    return {"jobs_per_s": n / elapsed, "statements_per_job": 2.0, "event_round_trips_per_job": 2.0}


def naive_actor(broker: dramatiq.Broker, database_url: str) -> dramatiq.Actor:  # type: ignore[type-arg]
    """The seeds' per-job worker: UPDATE, PUBLISH, UPDATE, PUBLISH, each a round trip
    (asyncpg pool of one connection per thread); `actor.done[0]` counts finished jobs."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def connect() -> asyncpg.Pool:
        return await asyncpg.create_pool(plain(database_url), min_size=THREADS, max_size=THREADS)

    pool = asyncio.run_coroutine_threadsafe(connect(), loop).result()
    publisher = aioredis.Redis.from_url(REDIS_URL)
    done = [0]

    async def run_job(job_id: str) -> None:
        for status in ("RUNNING", "COMPLETED"):
            row = await pool.fetchrow(
                "UPDATE jobs SET status = $2, updated_at = now() WHERE id = $1 RETURNING tenant_id",
                uuid.UUID(job_id),
                status,
            )
            event = {
                "type": "JOB_UPDATE",
                "jobId": job_id,
                "status": status,
                "tenantId": row["tenant_id"],
            }
            await publisher.publish(f"{broker.namespace}:job_updates", json.dumps(event))  # type: ignore[attr-defined]
        done[0] += 1

    def job(job_id: str) -> None:
        asyncio.run_coroutine_threadsafe(run_job(job_id), loop).result()

    actor = dramatiq.Actor(
        job, broker=broker, actor_name="naive", queue_name="bench", priority=0, options={}
    )
    actor.done = done  # type: ignore[attr-defined]
    return actor


def ferry_broker(
    namespace: str, database_url: str, fair: bool, jobs: str = ""
) -> tuple[dramatiq.Broker, WorkerServices]:
    """Ferry's broker installed in this process (as a worker's), and its background services;
    `jobs`: FERRY_JOBS."""
    settings = Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_namespace=namespace,
        fair_scheduling=fair,
        ferry_jobs=jobs,
    )
    broker = install(build_broker(settings), settings)
    return broker, next(m for m in broker.middleware if isinstance(m, WorkerServices))


def ferry(n: int, namespace: str, database_url: str, threads: int, fair: bool) -> dict[str, Any]:
    ids = insert_pending(database_url, n)
    broker, lifecycle = ferry_broker(namespace, database_url, fair)
    Sender(broker).send_now([Enqueued(job_id, "sleep", "bench", 0) for job_id in ids])
    writer = lifecycle.writer
    spent = this_worker()  # its threads, writer and feeder
    elapsed = drain(broker, lambda: writer.transitions >= 2 * n, threads, spent)
    completed = asyncio.run(_count_completed(database_url, ids))
    assert completed == n, f"{completed} of {n} jobs completed"
    events = lifecycle.events
    return {
        **spent.ms_per(n),
        "jobs_per_s": n / elapsed,
        "statements_per_job": writer.statements / n,
        "event_round_trips_per_job": (
            events.round_trips if isinstance(events, RedisEventLog) else 0
        )
        / n,
        "transitions_per_statement": writer.transitions / writer.statements,
    }


async def _count_completed(database_url: str, ids: list[uuid.UUID]) -> int:
    conn = await asyncpg.connect(plain(database_url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE status = $1 AND id = ANY($2)",
                JobStatus.COMPLETED,
                ids,
            )
        )
    finally:
        await conn.close()


def processes(n: int, namespace: str, database_url: str, count: int) -> dict[str, Any]:
    ids = insert_pending(database_url, n)
    env = ferry_env(
        DATABASE_URL=database_url,
        REDIS_URL=REDIS_URL,
        REDIS_NAMESPACE=namespace,
        LOG_LEVEL="WARNING",
    )
    broker = build_broker(Settings(redis_url=REDIS_URL, redis_namespace=namespace))
    try:
        with (
            log_directory() as logs,
            worker_process(env, logs / "worker.log", threads=32, processes=count),
        ):
            wait_for_consumer(namespace, count)
            start = time.perf_counter()
            Sender(broker).send_now([Enqueued(job_id, "sleep", "bench", 0) for job_id in ids])
            asyncio.run(_until_completed(database_url, ids))
            elapsed = time.perf_counter() - start
    finally:
        broker.close()
    return {"jobs_per_s": n / elapsed}


async def _until_completed(database_url: str, ids: list[uuid.UUID]) -> None:
    """Polls the table (the workers are other processes) on one connection, counting the
    COMPLETED rows of the run's own database, which holds only `ids`."""
    conn = await asyncpg.connect(plain(database_url))
    try:
        query = "SELECT count(*) FROM jobs WHERE status = $1"
        done = 0
        while done < len(ids):
            done = await conn.fetchval(query, JobStatus.COMPLETED)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


def main() -> None:
    scenario, n, namespace = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    database_url = sys.argv[4] if len(sys.argv) > 4 else ""
    if scenario == "bare":
        result = bare(n, namespace)
    elif scenario.startswith("bare-"):
        result = bare(n, namespace, int(scenario.split("-")[1]))
    elif scenario.startswith("path-"):
        result = path(n, namespace, int(scenario.split("-")[1]))
    elif scenario == "naive":
        result = naive(n, namespace, database_url)
    elif scenario.startswith("processes-"):
        result = processes(n, namespace, database_url, int(scenario.split("-")[1]))
    else:  # ferry-<threads> (fair scheduling, the default) or fifo-<threads>
        kind, threads = scenario.split("-")
        result = ferry(n, namespace, database_url, int(threads), fair=kind == "ferry")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
