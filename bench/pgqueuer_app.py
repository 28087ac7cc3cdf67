"""pgqueuer's side of the peers bench; runs only inside pgqueuer's own environment
(`uv run --isolated ... --with pgqueuer==1.6.0`, see bench/peers.py), never Ferry's.

- `pgq run bench.pgqueuer_app:create --batch-size B`: the worker, its documented
  CLI with a factory of ours (two no-op async entrypoints, connection from PGDSN);
- `python -m bench.pgqueuer_app N [single]`: the client. It enqueues one `warmup`
  job and waits for the worker to log it done (the worker is connected and warm),
  prints `ready`, waits for a line on stdin (the caller reads the worker's CPU
  time), then enqueues N `noop` jobs through `Queries.enqueue` with lists, 1,000 a
  call; with `single`, one job a call, IN_FLIGHT calls at once on a pool of as many
  connections (as Ferry's bench sends single `POST /jobs`), and prints the seconds
  the enqueues took.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.db import AsyncpgPoolDriver
from pgqueuer.models import Job

CHUNK = 1000  # jobs per enqueue call: Ferry's bench creates 1,000 per POST /jobs/batch
IN_FLIGHT = 32  # single enqueues at once: Ferry's bench has 32 POST /jobs in flight


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        pass

    @pgq.entrypoint("warmup")
    async def warmup(job: Job) -> None:
        pass

    try:
        yield pgq
    finally:
        await connection.close()


async def enqueue_singly(n: int) -> float:
    """N jobs, one per `enqueue`, IN_FLIGHT at a time; the seconds it took."""
    left = iter(range(n))
    async with asyncpg.create_pool(
        os.environ["PGDSN"], min_size=IN_FLIGHT, max_size=IN_FLIGHT
    ) as pool:
        queries = Queries(AsyncpgPoolDriver(pool))

        async def loop() -> None:
            for _ in left:
                await queries.enqueue("noop", None)

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(IN_FLIGHT)))
        return time.perf_counter() - start


async def enqueue(n: int, singly: bool = False) -> None:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.enqueue("warmup", None)
        deadline = time.monotonic() + 120  # the worker's boot
        while not await connection.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'warmup' AND status = 'successful'"
        ):
            if time.monotonic() > deadline:
                raise SystemExit("pgqueuer's worker ran no warm-up job within 120 s")
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        if singly:
            print(f"created_s {await enqueue_singly(n)}", flush=True)
            return
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(enqueue(int(sys.argv[1]), singly=sys.argv[2:] == ["single"]))
