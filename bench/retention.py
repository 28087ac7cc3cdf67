"""Retention under load, in a fresh process: `python -m bench.retention ROWS JOBS ...`.

ROWS finished jobs past their retention (COMPLETED eight days ago, over 100
tenants) are put in the table. Then, in interleaved rounds, a worker process as
`just worker` runs it (`dramatiq actors`, 32 threads, its own pruning off) drains
JOBS new jobs, then one API process answers 300 `GET /jobs?tenantId` (the first
page, with its total) one request at a time:
- quiet: nothing else runs (the baseline);
- pruning: meanwhile the recovery pass's pruning runs without a pause between
  passes (a process of its own, `Recovery.prune_finished` over and over: the most
  it can weigh on the drain and the reads).
The clock of a drain runs from its first message sent to PostgreSQL holding all
JOBS COMPLETED. At the end the pruner finishes the table: every finished row
past its retention is gone, and `job_counts` (what `/jobs/stats` reads) equals a
COUNT(*). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx

from bench.drain import insert_pending
from bench.realtime import wait_for_consumer
from bench.services import REDIS_URL, log_directory, plain
from bench.stats import percentile
from ferry.db.engine import create_engine
from ferry.db.jobs import Enqueued
from ferry.queue.brokers import build_broker
from ferry.queue.sender import Sender
from ferry.settings import Settings
from tests.support.processes import PROJECT_ROOT, api_process, ferry_env, worker_process

ROUNDS = 2
FILL = """
INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                  created_at, updated_at, finished_at, next_run_at)
SELECT gen_random_uuid(), 'old-' || (n % 100), 'sleep', '{"delayMs": 0}', 'COMPLETED', 1, 5,
       now() - interval '9 days', now() - interval '8 days' - make_interval(secs => n),
       now() - interval '8 days' - make_interval(secs => n), NULL
FROM generate_series(1, $1) AS n
"""


def prune_forever(database_url: str, stop: Any, pruned: Any) -> None:
    """The pruner's process: the recovery pass's pruning step, pass after pass."""
    from dramatiq.brokers.stub import StubBroker

    from ferry.worker import recovery as passes
    from ferry.worker.recovery import Recovery

    passes.PRUNE_BUDGET_S = 0.2  # the same batches and breaths; the count read more often

    async def run() -> None:
        engine = create_engine(Settings(database_url=database_url), pool_size=2)
        recovery = Recovery(lambda: engine, StubBroker(), Settings(database_url=database_url))
        while not stop.is_set():
            await recovery.prune_finished()
            pruned.value = recovery.pruned
        await engine.dispose()

    asyncio.run(run())


READS = 300
LIST = "/jobs?tenantId=drained&limit=20"


def reads(base: str) -> list[float]:
    """`GET /jobs?tenantId` (the first page, with its total), one request at a time."""
    latencies = []
    with httpx.Client(base_url=base) as client:
        client.get(LIST).raise_for_status()  # warm
        for _ in range(READS):
            start = time.perf_counter()
            client.get(LIST).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def drain_round(namespace: str, database_url: str, jobs: int, round_no: int) -> float:
    """Send JOBS new jobs to the running worker; jobs/s until all are COMPLETED."""
    ids = insert_pending(database_url, jobs, tenant="drained")
    broker = build_broker(Settings(redis_url=REDIS_URL, redis_namespace=namespace))
    try:
        start = time.perf_counter()
        Sender(broker).send_now([Enqueued(job_id, "sleep", "drained", 0) for job_id in ids])
        asyncio.run(_until_completed_of(database_url, round_no * jobs))
        return jobs / (time.perf_counter() - start)
    finally:
        broker.close()


async def _until_completed_of(database_url: str, total: int) -> None:
    conn = await asyncpg.connect(plain(database_url))
    try:
        query = "SELECT count(*) FROM jobs WHERE status = 'COMPLETED' AND tenant_id = 'drained'"
        done = 0
        while done < total:
            done = await conn.fetchval(query)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def fill(database_url: str, rows: int) -> None:
    conn = await asyncpg.connect(plain(database_url))
    try:
        await conn.execute(FILL, rows)
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def check(database_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(plain(database_url))
    try:
        old = await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant_id LIKE 'old-%'")
        rows = await conn.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counters = await conn.fetch(
            "SELECT status, sum(n) AS n FROM job_counts GROUP BY status HAVING sum(n) > 0"
        )
        return {
            "left_past_retention": int(old),
            "counters_exact": {r["status"]: int(r["n"]) for r in rows}
            == {r["status"]: int(r["n"]) for r in counters},
        }
    finally:
        await conn.close()


def main() -> None:
    rows, jobs, namespace, database_url = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4],
    )  # fmt: skip
    print(f"... retention: {rows:,} finished jobs into the table", file=sys.stderr, flush=True)
    asyncio.run(fill(database_url, rows))
    env = ferry_env(
        DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=namespace,
        LOG_LEVEL="WARNING", RETENTION_COMPLETED="0",  # the worker does not prune: the pruner does
    )  # fmt: skip
    drains: dict[str, list[float]] = {"quiet": [], "pruning": []}
    latencies: dict[str, list[float]] = {"quiet": [], "pruning": []}
    pruning_s, pruned_during = 0.0, 0
    with (
        log_directory() as logs,
        api_process(env, PROJECT_ROOT, logs / "api.log") as base,
        worker_process(env, logs / "worker.log", threads=32),
    ):
        wait_for_consumer(namespace, 1)
        round_no = 0
        for _ in range(ROUNDS):
            for mode in ("quiet", "pruning"):
                round_no += 1
                say(f"round {round_no}: drain and reads ({mode})")
                with pruner(database_url, mode == "pruning") as (pruned, started):
                    drains[mode].append(drain_round(namespace, database_url, jobs, round_no))
                    latencies[mode] += reads(base)
                    if mode == "pruning":
                        pruning_s += time.perf_counter() - started
                        pruned_during += pruned()
        say("the pruner finishes the table")
        finish_started = time.perf_counter()
        prune_forever_until_done(database_url)
        finish_s = time.perf_counter() - finish_started
    result: dict[str, Any] = asyncio.run(check(database_url))
    for mode in drains:
        result[f"{mode}_jobs_per_s"] = statistics.median(drains[mode])
        result[f"{mode}_list_p50_ms"] = statistics.median(latencies[mode])
        result[f"{mode}_list_p99_ms"] = percentile(latencies[mode], 0.99)
    result["pruned_per_s"] = pruned_during / pruning_s
    result["pruned_during_rounds"] = pruned_during
    result["rows"] = rows
    result["finish_s"] = finish_s
    print(json.dumps(result))


def say(what: str) -> None:
    print(f"... retention: {what}", file=sys.stderr, flush=True)


@contextmanager
def pruner(database_url: str, on: bool) -> Iterator[tuple[Callable[[], int], float]]:
    """With `on`, the pruner's process runs (under way already) until the block ends;
    yields how many rows it has pruned since, and when it started."""
    if not on:
        yield (lambda: 0), time.perf_counter()
        return
    stop, pruned = multiprocessing.Event(), multiprocessing.Value("q", 0)
    process = multiprocessing.Process(target=prune_forever, args=(database_url, stop, pruned))
    process.start()
    time.sleep(1)
    before = pruned.value
    try:
        yield (lambda: int(pruned.value - before)), time.perf_counter()
    finally:
        stop.set()
        process.join()


def prune_forever_until_done(database_url: str) -> None:
    from dramatiq.brokers.stub import StubBroker

    from ferry.worker.recovery import Recovery

    async def run() -> None:
        engine = create_engine(Settings(database_url=database_url), pool_size=2)
        recovery = Recovery(lambda: engine, StubBroker(), Settings(database_url=database_url))
        before = -1
        while recovery.pruned != before:
            before = recovery.pruned
            await recovery.prune_finished()
        await engine.dispose()

    asyncio.run(run())


if __name__ == "__main__":
    main()
