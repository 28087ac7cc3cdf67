"""A job whose outcome the database cannot store stops no one: real API and worker
processes on PostgreSQL and Redis, and a local webhook target answering a NUL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audit import audited_database, counts, transitions, wait_until
from tests.support.jobs import new_tenant, sleep_job
from tests.support.processes import api_process, shared_env, worker_process
from tests.support.servers import Hooks, webhook_server
from tests.support.services import redis_namespace


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    with webhook_server() as server:
        yield server


def test_a_webhook_answering_a_nul_blocks_no_other_tenant(tmp_path: Path, hooks: Hooks) -> None:
    with audited_database("ferry_bad_jobs") as url, redis_namespace() as namespace:
        env = shared_env(url, namespace, WEBHOOK_ALLOW_PRIVATE="true", LOG_LEVEL="WARNING")
        with (
            api_process(env, tmp_path, tmp_path / "api.log") as base,
            worker_process(env, tmp_path / "worker.log", threads=4),
        ):
            bad_tenant, good_tenant = new_tenant(), new_tenant()
            webhooks = [
                {
                    "tenantId": bad_tenant,
                    "type": "webhook",
                    "payload": {"url": f"{hooks.base}/nul/{code}"},
                }
                for code in (200, 400)
            ]
            others = [sleep_job(good_tenant) for _ in range(100)]
            created = httpx.post(f"{base}/jobs/batch", json={"jobs": webhooks + others}, timeout=10)
            assert created.status_code == 201, created.text
            ok_id, refused_id, *sleep_ids = created.json()["jobIds"]
            wait_until(
                lambda: counts(url).get("COMPLETED", 0) >= 101, 60, "the sleep jobs to complete"
            )
            time.sleep(1)  # nothing is tried again meanwhile
            jobs = {
                job_id: httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
                for job_id in (ok_id, refused_id)
            }
        assert counts(url) == {"COMPLETED": 101, "FAILED": 1}
        ran = transitions(url, "RUNNING")
    assert ran == {job_id: 1 for job_id in [ok_id, refused_id, *sleep_ids]}  # each ran once
    # The target's text is stored as it can be: the NUL replaced.
    ok, refused = jobs[ok_id], jobs[refused_id]
    assert (ok["status"], ok["result"]) == (
        "COMPLETED", {"status": 200, "body": '{"text": "before\ufffdafter"}'},
    )  # fmt: skip
    assert refused["status"] == "FAILED"
    assert refused["error"].endswith('answered 400: {"text": "before\ufffdafter"}')
    assert len(hooks.received("/nul/200")) == len(hooks.received("/nul/400")) == 1
