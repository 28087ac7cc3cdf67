"""pgqueuer's side of the peers bench; runs only inside pgqueuer's own environment
(`uv run --isolated ... --with pgqueuer==1.6.0`, see bench/peers.py), never Ferry's.

- `pgq run bench.pgqueuer_app:create --batch-size B`: the worker, its documented
  CLI with a factory of ours (two no-op async entrypoints, connection from PGDSN);
- `python -m bench.pgqueuer_app N`: the client. It enqueues one `warmup` job and
  waits for the worker to log it done (the worker is connected and warm), prints
  `ready`, waits for a line on stdin (the caller reads the worker's CPU time),
  then enqueues N `noop` jobs through `Queries.enqueue` with lists, 1,000 a call.
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
from pgqueuer.models import Job

CHUNK = 1000  # jobs per enqueue call: Ferry's bench creates 1,000 per POST /jobs/batch


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


async def enqueue(n: int) -> None:
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
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(enqueue(int(sys.argv[1])))
