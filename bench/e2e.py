"""End to end, in a fresh process: `python -m bench.e2e MODE N ...`.

One API process (uvicorn) and one worker process (`dramatiq`, 32 threads; two
for batch-2-workers) on PostgreSQL and Redis, and a WebSocket subscriber of the
tenant, all on this machine. The clock runs from the first create request until the subscriber
has received the COMPLETED event of every job.
- single: N jobs, one `POST /jobs` each, 32 requests in flight;
- batch:  N jobs in `POST /jobs/batch` requests of 1,000, 2 in flight;
- batch-2-workers: the same, with 2 worker processes (`WORKER_PROCESSES=2`);
- front:  the front half alone: the batch creates with no worker, the clock
          stopped once the subscriber has every job's PENDING event (what the API,
          PostgreSQL and Redis do before any worker takes a job);
- naive:  the seeds' design without HTTP: per job an INSERT and a message
          (32 in flight), and a worker (1 process x 8 threads, as in
          bench/drain.py) that runs UPDATE RUNNING, PUBLISH, UPDATE COMPLETED,
          PUBLISH, each its own round trip.
Prints one JSON line (jobs/s, latencies in ms, peak RSS in MiB, the worker's and
the API's CPU time per job while the clock ran, and the whole machine's, in ms;
front: jobs/s and the API's and the machine's CPU time per job) and, on stderr,
the completions per second as the run goes.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import httpx
import msgspec
from dramatiq.brokers.redis import RedisBroker
from websockets.asyncio.client import connect

from bench import http
from bench.cpu import Spent
from bench.drain import THREADS, naive_actor
from bench.realtime import ferry_stack, stack_env, wait_until
from bench.services import REDIS_URL, log_directory, plain
from bench.stats import percentile
from tests.support.processes import PROJECT_ROOT, api_process

TENANT = "e2e"
IN_FLIGHT = 32
BATCH = 1000
JOB = {"tenantId": TENANT, "type": "sleep", "payload": {"delayMs": 0}}
BATCH_FRAMES = os.environ.get("FERRY_BENCH_BATCH_FRAMES", "true")  # false: one event a frame


class Completions:
    """What the subscriber saw: when each job's `status` event (COMPLETED) arrived, and
    every event's lag."""

    def __init__(self, status: str = "COMPLETED") -> None:
        self.status = status
        self.done: dict[str, float] = {}
        self.lags_ms: list[float] = []
        self.resyncs = 0  # events the feed could no longer read back: the run is void

    def record(self, raw: str | bytes) -> None:
        event = json.loads(raw)
        self.resyncs += event.get("type") == "RESYNC"
        if event.get("type") != "JOB_UPDATE":
            return
        now = time.time()
        self.lags_ms.append((now - datetime.fromisoformat(event["at"]).timestamp()) * 1000)
        if event["status"] == self.status:
            self.done[event["jobId"]] = now


def memory_mib(pid: int, field: str) -> float:
    """A /proc status field (VmRSS, VmHWM) of a process, or of its largest child for a
    `dramatiq` main process (it forks the worker)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    return max(
        int(line.split()[1]) / 1024
        for each in pids
        for line in Path(f"/proc/{each}/status").read_text().splitlines()
        if line.startswith(f"{field}:")
    )


async def subscribe(base: str, seen: Completions) -> asyncio.Task[None]:
    """A WebSocket that follows the tenant, several messages a frame (`?batch=true`),
    as a client that follows a whole tenant's events would."""
    ws = await connect(base.replace("http", "ws") + f"/ws?batch={BATCH_FRAMES}", max_queue=None)
    await ws.recv()
    await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": TENANT}))
    await ws.recv()

    async def receive() -> None:
        async for frame in ws:
            for message in str(frame).split("\n"):  # a text frame
                seen.record(message)

    return asyncio.create_task(receive())


async def create_single(base: str, n: int, created: dict[str, float], lat: list[float]) -> None:
    await create(base, [http.post_request(base, "/jobs", JOB)] * n, created, lat, IN_FLIGHT)


async def create_batch(base: str, n: int, created: dict[str, float], lat: list[float]) -> None:
    requests = [
        http.post_request(base, "/jobs/batch", {"jobs": [JOB] * min(BATCH, n - start)})
        for start in range(0, n, BATCH)
    ]
    await create(base, requests, created, lat, in_flight=2)


async def create(
    base: str, requests: list[bytes], created: dict[str, float], lat: list[float], in_flight: int
) -> None:
    """Send `requests`, `in_flight` at a time: when each job's request was sent in
    `created` (by job id), each request's latency (ms) in `lat`."""
    left = iter(requests)

    async def loop() -> None:
        connection = await http.connect(base)
        for raw in left:
            start = time.time()
            status, answer = await connection.request(raw)
            assert status == 201, answer
            body = msgspec.json.decode(answer)
            for job_id in body["jobIds"] if "jobIds" in body else [body["jobId"]]:
                created[job_id] = start
            lat.append((time.time() - start) * 1000)
        connection.close()

    await asyncio.gather(*(loop() for _ in range(in_flight)))


async def progress(
    seen: Completions, n: int, start: float, worker_pid: int, samples: list[list[float]]
) -> None:
    """A line a second on stderr; [seconds, jobs done, worker RSS MiB] in `samples`."""
    last = 0
    while True:
        await asyncio.sleep(1)
        done = len(seen.done)
        samples.append([time.time() - start, done, memory_mib(worker_pid, "VmRSS")])
        print(f"... {samples[-1][0]:5.1f} s: {done:,}/{n:,} completed ({done - last:,}/s), "
              f"worker RSS {samples[-1][2]:.0f} MiB", file=sys.stderr, flush=True)  # fmt: skip
        last = done


async def ferry_run(mode: str, n: int, namespace: str, database_url: str) -> dict[str, Any]:
    # The tenant's history holds the whole run (3 events a job): a subscriber that
    # falls behind reads what it missed back instead of being told to resync.
    workers = 2 if mode == "batch-2-workers" else 1
    history = str(3 * n + 1000)
    with ferry_stack(namespace, database_url, workers, EVENT_HISTORY=history) as (base, worker):
        api_pid = await pid_of(base)
        seen = Completions()
        receiver = await subscribe(base, seen)
        created: dict[str, float] = {}
        create_ms: list[float] = []
        # While the clock runs: the boot of either process is not the jobs' cost.
        spent = Spent(worker=worker.pid, api=api_pid).start()
        start = time.time()
        samples: list[list[float]] = []
        reporter = asyncio.create_task(progress(seen, n, start, worker.pid, samples))
        creator = create_single if mode == "single" else create_batch
        await creator(base, n, created, create_ms)
        created_s = time.time() - start
        await wait_until(lambda: len(seen.done) >= n or seen.resyncs, 600)
        assert not seen.resyncs, f"the subscriber was told to resync {seen.resyncs} time(s)"
        elapsed = max(seen.done.values()) - start
        spent.stop()
        reporter.cancel()
        receiver.cancel()
        peaks = {
            "api_rss_mib": memory_mib(api_pid, "VmHWM"),
            "worker_rss_mib": memory_mib(worker.pid, "VmHWM"),
        }
        # The worker's RSS once a tenth of the jobs are done (warmed up), at half, and
        # at the end: a leak grows it in the second half as much as in the first.
        end = memory_mib(worker.pid, "VmRSS")
        warm, half = (
            next((mib for _, done, mib in samples if done >= n * share), end)
            for share in (0.1, 0.5)
        )
        peaks |= {"worker_rss_warm_mib": warm, "worker_rss_half_mib": half}
        peaks |= {"worker_rss_end_mib": end}
    completed = await count_status(database_url, "COMPLETED")
    assert completed == n == len(seen.done), (completed, n, len(seen.done))
    to_complete = [(seen.done[job_id] - created[job_id]) * 1000 for job_id in created]
    return {
        "jobs_per_s": n / elapsed,
        "create_per_s": n / created_s,
        "create_p50_ms": statistics.median(create_ms),
        "create_p99_ms": percentile(create_ms, 0.99),
        "complete_p50_ms": statistics.median(to_complete),
        "complete_p99_ms": percentile(to_complete, 0.99),
        "event_p99_ms": percentile(seen.lags_ms, 0.99),
        **peaks,
        **spent.ms_per(n),
        "timeline": samples,  # for the chart
    }


async def front_run(n: int, namespace: str, database_url: str) -> dict[str, Any]:
    """The batch creates with no worker, until the subscriber has every PENDING event."""
    env = stack_env(namespace, database_url, EVENT_HISTORY=str(n + 1000))
    with log_directory() as logs, api_process(env, PROJECT_ROOT, logs / "api.log") as base:
        api_pid = await pid_of(base)
        seen = Completions("PENDING")
        receiver = await subscribe(base, seen)
        spent = Spent(api=api_pid).start()
        start = time.time()
        await create_batch(base, n, {}, [])
        await wait_until(lambda: len(seen.done) >= n or seen.resyncs, 600)
        assert not seen.resyncs, f"the subscriber was told to resync {seen.resyncs} time(s)"
        spent.stop()
        assert len(seen.done) == n, f"{len(seen.done)} of {n} PENDING events arrived"
        result = {"jobs_per_s": n / (max(seen.done.values()) - start), **spent.ms_per(n)}
        receiver.cancel()
    pending = await count_status(database_url, "PENDING")
    assert pending == n, f"{pending} of {n} jobs are PENDING"
    return result


async def pid_of(base: str) -> int:
    """The API process's pid, from the instance name its health check reports."""
    health = await asyncio.to_thread(httpx.get, f"{base}/health")
    return int(health.json()["instance"].rsplit(":", 1)[1])


async def count_status(database_url: str, status: str) -> int:
    conn = await asyncpg.connect(plain(database_url))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status))
    finally:
        await conn.close()


async def naive_run(n: int, namespace: str, database_url: str) -> dict[str, Any]:
    """Per job: INSERT, send; the worker: two UPDATEs and two PUBLISHes."""
    pool = await asyncpg.create_pool(plain(database_url), min_size=IN_FLIGHT, max_size=IN_FLIGHT)
    broker = RedisBroker(url=REDIS_URL, namespace=namespace)  # type: ignore[no-untyped-call]
    actor = naive_actor(broker, database_url)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    worker.start()
    created: dict[str, float] = {}
    create_ms: list[float] = []
    start = time.time()
    left = iter(range(n))

    async def loop() -> None:
        for _ in left:
            job_id = uuid.uuid4()
            began = time.time()
            await pool.execute(
                "INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,"
                " created_at, updated_at, next_run_at) VALUES ($1, $2, 'sleep',"
                " '{\"delayMs\": 0}', 'PENDING', 0, 5, now(), now(), now())",
                job_id,
                TENANT,
            )
            await asyncio.to_thread(actor.send, str(job_id))
            created[str(job_id)] = began
            create_ms.append((time.time() - began) * 1000)

    await asyncio.gather(*(loop() for _ in range(IN_FLIGHT)))
    await wait_until(lambda: actor.done[0] >= n, 600)  # type: ignore[attr-defined]
    elapsed = time.time() - start
    worker.stop()
    await pool.close()
    return {
        "jobs_per_s": n / elapsed,
        "create_per_s": float("nan"),
        "create_p50_ms": statistics.median(create_ms),
        "create_p99_ms": percentile(create_ms, 0.99),
        "complete_p50_ms": float("nan"),
        "complete_p99_ms": float("nan"),
        "event_p99_ms": float("nan"),
        "api_rss_mib": float("nan"),
        "worker_rss_mib": float("nan"),
        "worker_rss_warm_mib": float("nan"),
        "worker_rss_half_mib": float("nan"),
        "worker_rss_end_mib": float("nan"),
        "worker_cpu_ms_per_job": float("nan"),
        "api_cpu_ms_per_job": float("nan"),
        "timeline": [],
    }


def main() -> None:
    mode, n, namespace, database_url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if mode == "naive":
        result = asyncio.run(naive_run(n, namespace, database_url))
    elif mode == "front":
        result = asyncio.run(front_run(n, namespace, database_url))
    else:
        result = asyncio.run(ferry_run(mode, n, namespace, database_url))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
