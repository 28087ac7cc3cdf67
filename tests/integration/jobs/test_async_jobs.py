"""Async handlers on the job loop of a real `dramatiq actors` worker process: many at
once without a thread each, a time limit and a cancel that reach a handler while it
awaits, the outcomes of sync handlers (retry, permanent error, oversized result)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jobs import TERMINAL, new_tenant
from tests.support.processes import api_process, shared_env, wait_for_status, worker_process
from tests.support.services import redis_namespace
from tests.support.user_jobs import user_env
from tests.support.user_jobs.stack import user_stack

ASYNC_JOBS = "tests.support.user_jobs.async_jobs"
THREADS = 2  # far fewer than the async jobs that must run at once


@dataclass(frozen=True)
class Stack:
    base: str
    home: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("async_jobs")
    # A quick heartbeat: a cancel reaches the worker within 200 ms, long before the
    # time limit of the handler it interrupts.
    with user_stack(home, ASYNC_JOBS, threads=THREADS, HEARTBEAT_MS="200") as base:
        yield Stack(base, home)


def create(base: str, job_type: str, payload: dict[str, Any], tenant: str | None = None) -> str:
    body = {"tenantId": tenant or new_tenant(), "type": job_type, "payload": payload}
    response = httpx.post(f"{base}/jobs", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["jobId"])


def test_many_async_jobs_run_at_once_on_one_process_with_two_threads(stack: Stack) -> None:
    # Each returns only once all 40 run at the same time: with a thread (or a loop) per
    # job, two threads could never get there.
    name, count = uuid.uuid4().hex, 40
    tenant = new_tenant()
    body = {
        "jobs": [
            {"tenantId": tenant, "type": "rendezvous", "payload": {"name": name, "expect": count}}
            for _ in range(count)
        ]
    }
    job_ids = httpx.post(f"{stack.base}/jobs/batch", json=body, timeout=10).json()["jobIds"]
    done = [wait_for_status(stack.base, job_id, TERMINAL, 60) for job_id in job_ids]
    assert [(job["status"], job["result"]) for job in done] == [
        ("COMPLETED", {"met": True})
    ] * count


def test_the_time_limit_ends_a_handler_that_awaits(stack: Stack) -> None:
    job_id = create(stack.base, "nap", {"seconds": 3600})  # its limit is 5 s
    failed = wait_for_status(stack.base, job_id, TERMINAL, 30)
    assert (failed["status"], failed["error"]) == ("FAILED", "time limit exceeded")


def test_a_timeout_the_handler_raises_is_its_own_error_not_the_limit(stack: Stack) -> None:
    failed = wait_for_status(stack.base, create(stack.base, "async_timeout", {}), TERMINAL)
    assert (failed["status"], failed["error"]) == ("FAILED", "TimeoutError: the upstream timed out")


def test_a_cancel_reaches_a_handler_while_it_awaits(stack: Stack) -> None:
    note = stack.home / f"cancelled-{uuid.uuid4().hex}"
    job_id = create(stack.base, "nap", {"seconds": 3600, "note": str(note)})
    wait_for_status(stack.base, job_id, {"RUNNING"})
    response = httpx.post(f"{stack.base}/jobs/{job_id}/cancel", timeout=10)
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 4  # before its time limit would end it anyway
    while not note.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert note.exists(), "the cancel did not reach the awaiting handler"
    assert note.read_text() == "aborted=True"
    assert httpx.get(f"{stack.base}/jobs/{job_id}").json()["status"] == "CANCELLED"


def test_retry_and_permanent_error_from_async_handlers(stack: Stack) -> None:
    retried = wait_for_status(stack.base, create(stack.base, "async_flaky", {}), TERMINAL)
    assert (retried["status"], retried["attempts"], retried["result"]) == (
        "COMPLETED", 2, {"attempt": 2},
    )  # fmt: skip
    refused = create(stack.base, "async_flaky", {"fail": True})
    failed = wait_for_status(stack.base, refused, TERMINAL)
    assert (failed["status"], failed["attempts"], failed["error"]) == (
        "FAILED", 2, "PermanentError: refused",
    )  # fmt: skip


def test_an_oversized_async_result_fails_the_attempt(stack: Stack) -> None:
    failed = wait_for_status(stack.base, create(stack.base, "async_bloat", {}), TERMINAL)
    assert failed["status"] == "FAILED"
    assert failed["error"].startswith("ResultTooLarge: the result is 102,4"), failed["error"]


def test_a_stopped_worker_finishes_its_async_jobs_first(own_database: str, tmp_path: Path) -> None:
    with redis_namespace() as namespace:
        env = shared_env(own_database, namespace, **user_env(FERRY_JOBS=ASYNC_JOBS))
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            tenant = new_tenant()
            with worker_process(env, tmp_path / "worker.log", threads=THREADS) as worker:
                # 3 s each (their limit is 5): still running when the worker is told to stop.
                job_ids = [create(base, "nap", {"seconds": 3}, tenant) for _ in range(6)]
                for job_id in job_ids:  # all six at once, on two threads
                    wait_for_status(base, job_id, {"RUNNING"})
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(timeout=30) == 0
            done = [httpx.get(f"{base}/jobs/{job_id}").json() for job_id in job_ids]
    assert [(job["status"], job["attempts"]) for job in done] == [("COMPLETED", 1)] * 6
