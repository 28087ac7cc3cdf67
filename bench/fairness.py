"""The noisy neighbour, in a fresh process: `python -m bench.fairness fair|fifo FLOOD QUIET ...`.

Tenant `flood` has sent FLOOD jobs when a Ferry worker (1 process, 32
threads) starts; half a second later tenant `quiet` sends QUIET. How long do
the quiet tenant's jobs wait (send -> claim), and how long does the flood take?
(The flood is sent before the worker starts: sent from this process while 32
threads run, its sending would be slower than its draining.)
`fair` runs Ferry's default (per-tenant queues in round robin), `fifo` one
shared queue (FAIR_SCHEDULING=false). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import dramatiq

from bench.drain import ferry_broker, insert_pending, wait_for
from bench.services import plain
from bench.stats import percentile
from ferry.db.jobs import Enqueued
from ferry.queue.sender import Sender

THREADS = 32
HEAD_START_S = 0.5


def enqueued(ids: list[uuid.UUID], tenant: str) -> list[Enqueued]:
    return [Enqueued(job_id, "sleep", tenant, 0) for job_id in ids]


async def started_at(database_url: str, tenant: str) -> list[float]:
    conn = await asyncpg.connect(plain(database_url))
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM started_at) AS s FROM jobs WHERE tenant_id = $1", tenant
        )
    finally:
        await conn.close()
    return [float(row["s"]) for row in rows]


def noisy(fair: bool, flood: int, quiet: int, namespace: str, database_url: str) -> dict[str, Any]:
    broker, lifecycle = ferry_broker(namespace, database_url, fair)
    writer = lifecycle.writer
    flood_ids = insert_pending(database_url, flood, "flood")
    quiet_ids = insert_pending(database_url, quiet, "quiet")
    Sender(broker).send_now(enqueued(flood_ids, "flood"))
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    start = time.time()
    worker.start()
    time.sleep(HEAD_START_S)
    quiet_sent = time.time()
    Sender(broker).send_now(enqueued(quiet_ids, "quiet"))
    wait_for(lambda: writer.transitions >= 2 * (flood + quiet))
    elapsed = time.time() - start
    worker.stop()
    waits = [(s - quiet_sent) * 1000 for s in asyncio.run(started_at(database_url, "quiet"))]
    return {
        "quiet_p50_ms": statistics.median(waits),
        "quiet_p99_ms": percentile(waits, 0.99),
        "flood_drain_s": max(asyncio.run(started_at(database_url, "flood"))) - start,
        "jobs_per_s": (flood + quiet) / elapsed,
    }


def main() -> None:
    mode, flood, quiet, namespace, database_url = sys.argv[1:6]
    print(json.dumps(noisy(mode == "fair", int(flood), int(quiet), namespace, database_url)))


if __name__ == "__main__":
    main()
