"""A team's own job types, registered through FERRY_JOBS, run by real processes: the
API under uvicorn and `dramatiq actors` workers on PostgreSQL and Redis, both told
FERRY_JOBS=tests.support.user_jobs.jobs (a package outside Ferry's source).

The test process never imports the fixture package here: what the API and the
workers know of it, they learnt from FERRY_JOBS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jobs import TERMINAL, new_tenant
from tests.support.processes import (
    api_process,
    ferry_env,
    wait_for_status,
)
from tests.support.user_jobs import user_env
from tests.support.user_jobs.stack import user_stack

USER_TYPES = {"resize", "report", "flaky", "bloat", "whoami"}
BUILTIN_TYPES = {"sleep", "email", "webhook", "data_processing"}
RETRY_AFTER_MS = 2000  # tests.support.user_jobs.jobs.RETRY_AFTER_MS (not imported here)


@dataclass(frozen=True)
class Stack:
    base: str
    worker_log: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """An API and a worker process sharing a database and a Redis namespace of the module."""
    home = tmp_path_factory.mktemp("user_jobs")
    # A fast backoff: a Retry's own delay (2 s) cannot be mistaken for it.
    fast = {"RETRY_BASE_MS": "50", "RETRY_CAP_MS": "200"}
    with user_stack(home, threads=4, LOG_LEVEL="INFO", **fast) as base:
        yield Stack(base, home / "worker.log")


def create(base: str, body: dict[str, Any]) -> str:
    response = httpx.post(f"{base}/jobs", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["jobId"])


def run(base: str, body: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Create the job and wait for it to end."""
    return wait_for_status(base, create(base, body), TERMINAL, timeout)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_sync_and_async_types_complete_with_their_results(stack: Stack) -> None:
    tenant = new_tenant()
    resized = run(
        stack.base,
        {"tenantId": tenant, "type": "resize", "payload": {"url": "s3://a.png", "width": 640}},
    )
    assert (resized["status"], resized["attempts"], resized["error"]) == ("COMPLETED", 1, None)
    assert resized["result"] == {"url": "s3://a.png", "width": 640, "keepRatio": True}
    assert resized["payload"] == {"url": "s3://a.png", "width": 640, "keepRatio": True}

    reported = run(
        stack.base,
        {"tenantId": tenant, "type": "report", "payload": {"name": "q3", "sleepMs": 300}},
    )
    assert (reported["status"], reported["attempts"]) == ("COMPLETED", 1)
    assert reported["result"] == {"report": "q3", "sleptMs": 300, "onLoop": True}
    # It awaited its sleep.
    assert at(reported["finishedAt"]) - at(reported["startedAt"]) >= timedelta(milliseconds=280)


def test_the_context_tells_the_handler_its_job_and_logs_with_its_ids(stack: Stack) -> None:
    tenant = new_tenant()
    job_id = create(stack.base, {"tenantId": tenant, "type": "whoami", "payload": {"any": [1]}})
    done = wait_for_status(stack.base, job_id, TERMINAL)
    assert done["status"] == "COMPLETED", done
    assert done["result"] == {
        "jobId": job_id,
        "tenantId": tenant,
        "jobType": "whoami",
        "attempt": 1,
        "maxAttempts": 5,  # the deployment's default: the type sets none
        "aborted": False,
    }
    expected = f"running whoami for {tenant}"
    deadline = time.monotonic() + 5
    while True:  # the worker's log is written by another process
        lines = [
            json.loads(line)
            for line in stack.worker_log.read_text().splitlines()
            if line.startswith("{")
        ]
        logged = [line for line in lines if line.get("message") == expected]
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert logged, stack.worker_log.read_text()[-2000:]
    assert (logged[0]["job_id"], logged[0]["tenant_id"]) == (job_id, tenant)
    assert logged[0]["logger"] == "ferry.jobs.whoami"


def test_a_permanent_error_fails_the_job_at_once(stack: Stack) -> None:
    failed = run(
        stack.base,
        {"tenantId": new_tenant(), "type": "resize", "payload": {"url": "u", "width": 20_000}},
    )
    assert (failed["status"], failed["attempts"], failed["maxAttempts"]) == ("FAILED", 1, 3)
    assert failed["error"] == "PermanentError: too wide: 20000 px"
    assert failed["result"] is None


def test_retry_runs_the_next_attempt_after_the_delay_it_asks(stack: Stack) -> None:
    job_id = create(stack.base, {"tenantId": new_tenant(), "type": "flaky", "payload": {}})
    deadline = time.monotonic() + 20
    while True:  # until the first attempt has ended
        waiting = httpx.get(f"{stack.base}/jobs/{job_id}", timeout=5).json()
        if waiting["attempts"] >= 1 and waiting["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, waiting
        time.sleep(0.02)
    # After the first attempt: PENDING again, with the delay the handler asked for.
    assert (waiting["status"], waiting["attempts"]) == ("PENDING", 1), waiting
    assert waiting["error"] == "Retry: not ready yet"
    assert waiting["nextRunAt"] is not None
    delay = at(waiting["nextRunAt"]) - at(waiting["startedAt"])
    assert timedelta(milliseconds=RETRY_AFTER_MS) <= delay <= timedelta(seconds=10), delay

    done = wait_for_status(stack.base, job_id, TERMINAL)
    assert (done["status"], done["attempts"], done["error"]) == ("COMPLETED", 2, None)
    assert done["result"] == {"attempt": 2}
    # The second attempt started once the delay was over (not after the 50 ms backoff).
    waited = at(done["startedAt"]) - at(waiting["startedAt"])
    assert waited >= timedelta(milliseconds=RETRY_AFTER_MS - 100), waited


def test_an_oversized_result_fails_the_attempt(stack: Stack) -> None:
    failed = run(stack.base, {"tenantId": new_tenant(), "type": "bloat", "payload": {}})
    assert (failed["status"], failed["attempts"], failed["result"]) == ("FAILED", 1, None)
    assert failed["error"].startswith("ResultTooLarge: the result is 102,4"), failed["error"]
    assert "bytes; at most 65,536 are stored" in failed["error"]


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        ({"url": "u", "width": "wide"}, "payload.width"),
        ({"url": "u"}, "payload.width"),
        ({"width": 3}, "payload.url"),
        ({"url": "u", "width": 3, "height": 4}, "payload.height"),
        ({"url": "u", "width": 3, "keepRatio": "yes"}, "payload.keepRatio"),
    ],
)
def test_a_bad_payload_is_a_400_naming_the_field(
    stack: Stack, payload: dict[str, Any], key: str
) -> None:
    body = {"tenantId": new_tenant(), "type": "resize", "payload": payload}
    response = httpx.post(f"{stack.base}/jobs", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert [error["key"] for error in response.json()["extra"]] == [key], response.text
    # In a batch too, at its place.
    batch = {"jobs": [{**body, "payload": {"url": "u", "width": 1}}, body]}
    response = httpx.post(f"{stack.base}/jobs/batch", json=batch, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["key"] == f"jobs[1].{key}", response.text


def test_an_unknown_type_is_a_400_listing_the_registered_ones(stack: Stack) -> None:
    body = {"tenantId": new_tenant(), "type": "transcode", "payload": {}}
    response = httpx.post(f"{stack.base}/jobs", json=body, timeout=10)
    assert response.status_code == 400, response.text
    [error] = response.json()["extra"]
    assert error["key"] == "type", response.text
    listed = error["message"].rpartition("expected one of: ")[2].split(", ")
    assert set(listed) == USER_TYPES | BUILTIN_TYPES, error["message"]


def test_job_types_lists_the_users_types_with_their_payload_schema(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/job-types", timeout=10)
    assert response.status_code == 200, response.text
    types = {entry["name"]: entry for entry in response.json()}
    assert set(types) == USER_TYPES | BUILTIN_TYPES
    resize = types["resize"]
    assert (resize["timeLimitMs"], resize["maxAttempts"]) == (60_000, 3)
    assert (resize["retryBaseMs"], resize["retryCapMs"]) == (50, 200)  # the deployment's
    assert (types["whoami"]["retryBaseMs"], types["whoami"]["retryCapMs"]) == (
        50,
        150,
    )  # its own cap
    schema = resize["payloadSchema"]
    struct = schema["$defs"][schema["$ref"].rpartition("/")[2]]
    assert struct["properties"] == {
        "url": {"type": "string"},
        "width": {"type": "integer"},
        "keepRatio": {"type": "boolean", "default": True},
    }
    assert struct["required"] == ["url", "width"]
    assert types["whoami"]["payloadSchema"] == {"type": "object"}  # any object
    assert (types["whoami"]["timeLimitMs"], types["whoami"]["maxAttempts"]) == (600_000, 5)
    assert types["bloat"]["maxAttempts"] == 1


def test_the_openapi_schema_documents_the_users_payloads(stack: Stack) -> None:
    response = httpx.get(f"{stack.base}/schema/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    schemas = response.json()["components"]["schemas"]
    resize_job = schemas["NewResizeJob"]
    assert resize_job["properties"]["type"]["const"] == "resize"
    payload = resize_job["properties"]["payload"]
    resize = schemas[payload["$ref"].rpartition("/")[2]]
    assert set(resize["properties"]) == {"url", "width", "keepRatio"}
    assert set(resize["required"]) == {"url", "width"}
    assert {"NewReportJob", "NewFlakyJob", "NewBloatJob", "NewWhoamiJob"} <= set(schemas)


def test_the_embedded_default_runs_user_types_too(tmp_path: Path) -> None:
    """`just dev`: one process, SQLite and an in-process worker, FERRY_JOBS the same."""
    env = ferry_env(**user_env(LOG_LEVEL="WARNING"))
    with api_process(env, tmp_path, tmp_path / "dev.log", embedded=True) as base:
        tenant = new_tenant()
        resized = run(
            base, {"tenantId": tenant, "type": "resize", "payload": {"url": "u", "width": 3}}
        )
        reported = run(base, {"tenantId": tenant, "type": "report", "payload": {"name": "n"}})
    assert (resized["status"], resized["result"]["width"]) == ("COMPLETED", 3), resized
    assert (reported["status"], reported["result"]["report"]) == ("COMPLETED", "n"), reported
