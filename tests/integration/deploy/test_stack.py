"""`just stack`: nginx in front of two API processes and two workers, natively,
driven through nginx like a client of the compose deployment would."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.jobs import new_tenant, sleep_job
from tests.support.live import socket, statuses, stream
from tests.support.processes import PROJECT_ROOT, free_port, running, shared_env
from tests.support.services import redis_namespace


@dataclass
class Stack:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def apis(self) -> list[tuple[str, int]]:
        """Each API process's own base URL (not through nginx) and pid."""
        found = re.findall(r"api \d on :(\d+) \(pid (\d+)\)", self.log.read_text())
        return [(f"http://127.0.0.1:{port}", int(pid)) for port, pid in found]


@pytest.fixture(scope="module")
def stack(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log = tmp_path_factory.mktemp("stack") / "stack.log"
    port = free_port()
    with redis_namespace() as namespace:
        env = shared_env(
            module_database,
            namespace,
            STACK_PORT=str(port),
            WORKER_THREADS="8",
            LOG_LEVEL="WARNING",
        )
        with running(
            [sys.executable, str(PROJECT_ROOT / "infra" / "stack.py")], env, log.parent, log
        ) as process:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while "ferry stack: http://" not in log.read_text():
                assert process.poll() is None, f"the stack exited:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"the stack did not start:\n{log.read_text()}"
                time.sleep(0.1)
            yield Stack(base, process, log)


async def instances(base: str, requests: int = 20) -> set[str]:
    async with httpx.AsyncClient(base_url=base) as client:
        return {(await client.get("/health")).json()["instance"] for _ in range(requests)}


async def wait_completed(client: httpx.AsyncClient, tenant: str, count: int) -> None:
    async with asyncio.timeout(30):
        while (await client.get("/jobs/stats", params={"tenantId": tenant})).json()[
            "completed"
        ] < count:
            await asyncio.sleep(0.1)


async def test_requests_are_spread_over_both_api_processes(stack: Stack) -> None:
    assert len(await instances(stack.base)) == 2


async def test_jobs_created_through_nginx_complete(stack: Stack) -> None:
    tenant = new_tenant()
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        batch = await client.post(
            "/jobs/batch", json={"jobs": [sleep_job(tenant) for _ in range(30)]}
        )
        assert batch.status_code == 201
        for _ in range(10):
            assert (await client.post("/jobs", json=sleep_job(tenant))).status_code == 201
        await wait_completed(client, tenant, 40)


async def test_live_events_reach_clients_of_either_api_through_nginx(stack: Stack) -> None:
    tenant = new_tenant()
    async with (
        socket(stack.base) as ws1, socket(stack.base) as ws2,
        stream(stack.base, tenant) as sse1, stream(stack.base, tenant) as sse2,
    ):  # fmt: skip
        for ws in (ws1, ws2):
            await ws.subscribe(tenant)
        async with httpx.AsyncClient(base_url=stack.base) as client:
            job_id = (await client.post("/jobs", json=sleep_job(tenant))).json()["jobId"]
        expected = [(job_id, status) for status in ("PENDING", "RUNNING", "COMPLETED")]
        for subscriber in (ws1, ws2, sse1, sse2):
            assert statuses(await subscriber.updates(3)) == expected


async def test_metrics_are_the_deployments_whichever_api_answers(stack: Stack) -> None:
    tenant = new_tenant()
    async with (
        httpx.AsyncClient(base_url=stack.base, timeout=10) as client,
        socket(stack.base) as ws,
    ):
        await ws.subscribe(tenant)
        await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant) for _ in range(7)]})
        await client.post(
            "/jobs",
            json={
                "tenantId": tenant,
                "type": "webhook",
                "payload": {"url": "http://127.0.0.1:1/"},
                "maxAttempts": 1,
            },
        )
        await wait_completed(client, tenant, 7)
        created = f"ferry_jobs_created_total{sorted({'tenant': tenant, 'type': 'sleep'}.items())}"
        completed = f"ferry_jobs_finished_total{sorted({'tenant': tenant, 'type': 'sleep', 'status': 'COMPLETED'}.items())}"
        failed = f"ferry_jobs_finished_total{sorted({'tenant': tenant, 'type': 'webhook', 'status': 'FAILED'}.items())}"
        async with asyncio.timeout(10):  # workers flush once a second
            while True:
                # Either API process answers for the whole deployment.
                scrapes = [await asyncio.to_thread(scrape, stack.base) for _ in range(4)]
                if all(m.get(completed) == 7 and m.get(failed) == 1 for m in scrapes):
                    break
                await asyncio.sleep(0.2)
    for metrics in scrapes:
        assert metrics[created] == 7
        assert metrics["ferry_job_duration_seconds_count[('type', 'sleep')]"] >= 7
        assert metrics["ferry_batch_transitions_count[('kind', 'running')]"] >= 1
        assert metrics["ferry_live_subscribers[('transport', 'websocket')]"] >= 1
        assert "ferry_queue_depth[('queue', 'jobs')]" in metrics


async def test_a_stopped_api_process_hands_its_clients_to_the_other(stack: Stack) -> None:
    """SIGTERM to one API process: its event streams end at once (well before the
    graceful timeout would cut them), the clients reconnect through nginx to the
    other process and resume from their last event; nothing is lost.

    One stream goes through nginx, the other straight to the process that is stopped:
    each nginx worker process keeps a round robin of its own, so two streams through
    nginx may both be on the process that goes on."""
    tenant = new_tenant()
    stopped, pid = stack.apis()[0]
    async with httpx.AsyncClient(base_url=stack.base, timeout=10) as client:
        async with stream(stack.base, tenant) as first, stream(stopped, tenant) as second:
            job_id = (await client.post("/jobs", json=sleep_job(tenant))).json()["jobId"]
            seen = [await first.updates(3), await second.updates(3)]
            started = time.monotonic()
            os.kill(pid, signal.SIGTERM)
            nexts = [asyncio.ensure_future(s.next(timeout=10)) for s in (first, second)]
            ended, waiting = await asyncio.wait(nexts, return_when=asyncio.FIRST_EXCEPTION)
            for task in waiting:
                task.cancel()
            # Ended by the server, before the 5 s graceful timeout would have cut it.
            assert time.monotonic() - started < 4, "a stream outlived the shutdown"
        assert any(isinstance(task.exception(), StopAsyncIteration) for task in ended), ended
        async with asyncio.timeout(10):  # until its last keep-alive connections have closed
            while len(await instances(stack.base, 10)) != 1:  # every request still answered
                await asyncio.sleep(0.1)
        # Meanwhile a job runs; the reconnecting client replays what it missed.
        missed = (await client.post("/jobs", json=sleep_job(tenant))).json()["jobId"]
        await wait_completed(client, tenant, 2)
        async with stream(stack.base, tenant, last_event_id=seen[0][-1]["seq"]) as again:
            replayed = await again.updates(3)
    assert statuses(seen[0]) == [(job_id, s) for s in ("PENDING", "RUNNING", "COMPLETED")]
    assert statuses(replayed) == [(missed, s) for s in ("PENDING", "RUNNING", "COMPLETED")]


def test_sigterm_stops_the_whole_stack(stack: Stack) -> None:
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=40) == 0
    assert "ferry stack: stopped" in stack.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{stack.base}/health", timeout=2)


def scrape(base: str) -> dict[str, float]:
    """`GET /metrics`, as `name{labels}` -> value for the samples of a test's tenant."""
    text = httpx.get(f"{base}/metrics").text
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
