"""Async handlers at once on one worker process: `python -m bench.async_jobs SCENARIO N ...`.

N jobs of `await asyncio.sleep(1)` wait in the queue before the clock starts; the
clock stops when one worker process has run all of them.
- ferry-T: Ferry's worker with T threads: `bench_nap` jobs (bench.jobs) from PENDING to
           COMPLETED, many at once on the process's job loop;
- dramatiq-T: plain Dramatiq with its AsyncIO middleware and T threads: each thread
           waits for the coroutine it handed to the event loop, so T run at once.
Prints one JSON line: seconds, jobs/s, the most threads the process had.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import uuid
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO

from bench.drain import _count_completed, drain, ferry_broker, insert_pending
from bench.jobs import NAP_S
from bench.services import REDIS_URL
from ferry.db.jobs import Enqueued
from ferry.queue.sender import Sender


def measured(n: int, elapsed: float, threads: int) -> dict[str, Any]:
    return {
        "seconds": elapsed,
        "jobs_per_s": n / elapsed,
        "threads": threads,
    }


def ferry(n: int, threads: int, namespace: str, database_url: str) -> dict[str, Any]:
    ids = insert_pending(database_url, n, job_type="bench_nap")
    broker, services = ferry_broker(namespace, database_url, fair=True, jobs="bench.jobs")
    Sender(broker).send_now([Enqueued(job_id, "bench_nap", "bench", 0) for job_id in ids])
    writer = services.writer
    peak = [0]

    def done() -> bool:
        peak[0] = max(peak[0], threading.active_count())
        return writer.transitions >= 2 * n

    elapsed = drain(broker, done, threads)
    completed = asyncio.run(_count_completed(database_url, ids))
    assert completed == n, f"{completed} of {n} jobs completed"
    return measured(n, elapsed, peak[0])


def plain_dramatiq(n: int, threads: int, namespace: str) -> dict[str, Any]:
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)  # type: ignore[no-untyped-call]
    broker.add_middleware(AsyncIO())
    finished = [0]
    lock = threading.Lock()

    async def nap(job_id: str) -> None:
        await asyncio.sleep(NAP_S)
        with lock:
            finished[0] += 1

    actor: dramatiq.Actor[[str], None] = dramatiq.Actor(
        nap,  # a coroutine function: Dramatiq runs it through its AsyncIO middleware
        broker=broker,
        actor_name="nap",
        queue_name="bench",
        priority=0,
        options={},
    )
    for _ in range(n):
        actor.send(str(uuid.uuid4()))
    peak = [0]

    def done() -> bool:
        peak[0] = max(peak[0], threading.active_count())
        return finished[0] >= n

    elapsed = drain(broker, done, threads)
    return measured(n, elapsed, peak[0])


def main() -> None:
    scenario, n, namespace = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    database_url = sys.argv[4] if len(sys.argv) > 4 else ""
    kind, threads = scenario.split("-")
    if kind == "ferry":
        result = ferry(n, int(threads), namespace, database_url)
    else:
        result = plain_dramatiq(n, int(threads), namespace)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
