"""No committed change goes unannounced: workers killed with kill -9 while they commit,
real API and worker processes, a WebSocket and an SSE subscriber that must end up
knowing every job's final status from the stream alone (or from a re-read the
stream told them to make, RESYNC)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.audit import audited_database, counts, wait_until
from tests.support.jobs import new_tenant, sleep_job
from tests.support.live import Socket, Stream, socket, stream
from tests.support.processes import api_process, kill_hard, shared_env, worker_process
from tests.support.services import redis_namespace

JOBS = 2000
# What may follow what in one job's events (None: its first).
ANY = "any"  # after a re-read: the stream may still bring what the read already showed
STATUSES = {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"}
FOLLOWS = {
    ANY: STATUSES,
    None: {"PENDING"},
    "PENDING": {"RUNNING", "CANCELLED"},
    "RUNNING": {"COMPLETED", "FAILED", "PENDING", "CANCELLED"},
}


class Follower:
    """A client that knows jobs from their events, and re-reads them all on RESYNC."""

    def __init__(self, base: str, tenant: str) -> None:
        self.base, self.tenant = base, tenant
        self.known: dict[str, str] = {}
        self.last_event: dict[str, str] = {}
        self.seqs: list[int] = []
        self.out_of_order: list[tuple[str, str | None, str]] = []
        self.resyncs = 0
        self.history: dict[str, list[tuple[int, str, int]]] = {}

    def event(self, update: dict[str, Any]) -> None:
        self.seqs.append(update["seq"])
        job, status = update["jobId"], update["status"]
        self.history.setdefault(job, []).append((update["seq"], status, update["attempts"]))
        before = self.last_event.get(job)
        if status not in FOLLOWS.get(before, set()):
            self.out_of_order.append((job, before, status))
        self.last_event[job] = self.known[job] = status

    async def resync(self, seq: int) -> None:
        self.seqs.append(seq)
        self.resyncs += 1
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            for offset in range(0, JOBS, 500):
                page = await client.get(
                    "/jobs", params={"tenantId": self.tenant, "limit": 500, "offset": offset}
                )
                for job in page.json()["jobs"]:
                    self.known[job["id"]] = job["status"]
                    self.last_event[job["id"]] = ANY
                    self.history.setdefault(job["id"], []).append((seq, "RESYNC", 0))

    def completed(self) -> set[str]:
        return {job for job, status in self.known.items() if status == "COMPLETED"}


async def follow_socket(client: Socket, follower: Follower) -> None:
    while True:
        message = await client.receive(timeout=120)
        if message["type"] == "RESYNC":
            await follower.resync(message["seq"])
        else:
            follower.event(message)


async def follow_stream(client: Stream, follower: Follower) -> None:
    while True:
        event = await client.next(timeout=120)
        if event.event == "RESYNC":
            await follower.resync(int(event.id))
        else:
            follower.event(event.json())


def kill_workers_while_they_work(env: dict[str, str], url: str, logs: Path) -> int:
    """Start a worker, kill -9 it once it has completed some jobs, again, until all are
    done: each kill lands in the middle of its ticks. How many it killed."""
    kills = 0
    while counts(url).get("COMPLETED", 0) < JOBS - 200:
        target = counts(url).get("COMPLETED", 0) + 200
        with worker_process(env, logs / f"worker-{kills}.log", threads=16) as worker:
            deadline = time.monotonic() + 30
            while counts(url).get("COMPLETED", 0) < target and time.monotonic() < deadline:
                time.sleep(0.01)
            kill_hard(worker)
            kills += 1
    with worker_process(env, logs / "worker-last.log", threads=16):
        wait_until(lambda: counts(url).get("COMPLETED", 0) == JOBS, 120, "every job to complete")
        time.sleep(3)  # past the recovery pass's grace: whatever was left is relayed
    return kills


@pytest.fixture
def audited() -> Iterator[tuple[str, str]]:
    """A database of this test's own (every transition recorded) and a Redis namespace."""
    with audited_database("ferry_lost_events") as url, redis_namespace() as namespace:
        yield url, namespace


async def test_workers_killed_mid_tick_leave_no_change_unannounced(
    tmp_path: Path, audited: tuple[str, str]
) -> None:
    url, namespace = audited
    env = shared_env(
        url,
        namespace,
        LOG_LEVEL="WARNING",
        RECOVERY_INTERVAL_MS="500",
        RECOVERY_GRACE_MS="1000",
        HEARTBEAT_MS="500",
        LEASE_MS="3000",
    )
    tenant = new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        ws, sse = Follower(base, tenant), Follower(base, tenant)
        async with socket(base) as ws_client, stream(base, tenant) as sse_client:
            await ws_client.subscribe(tenant)
            followers = [
                asyncio.create_task(follow_socket(ws_client, ws)),
                asyncio.create_task(follow_stream(sse_client, sse)),
            ]
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                for start in range(0, JOBS, 1000):
                    jobs = [sleep_job(tenant) for _ in range(min(1000, JOBS - start))]
                    created = await client.post("/jobs/batch", json={"jobs": jobs})
                    assert created.status_code == 201, created.text
            kills = await asyncio.to_thread(kill_workers_while_they_work, env, url, tmp_path)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not all(
                len(follower.completed()) == JOBS for follower in (ws, sse)
            ):
                await asyncio.sleep(0.1)
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
    assert await asyncio.to_thread(counts, url) == {"COMPLETED": JOBS}

    assert kills >= 5
    for follower in (ws, sse):
        missing = JOBS - len(follower.completed())
        assert missing == 0, (
            f"{missing} COMPLETED jobs never announced ({follower.resyncs} RESYNCs)"
        )
        assert follower.seqs == list(range(1, len(follower.seqs) + 1))  # no gap, no repeat
        bad = follower.out_of_order[:3]
        assert follower.out_of_order == [], [(b, follower.history[b[0]]) for b in bad]
