"""Workers end to end: the real app, a real Dramatiq worker on Redis, PostgreSQL.

The worker runs in this process (tests/integration/conftest.py: same middleware,
same writer as `dramatiq actors`); the crash tests in recovery/ use real worker
processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import mailbox
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import msgspec
import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job
from ferry.queue.messages import job_message
from ferry.settings import Settings
from ferry.worker.boot import current_broker
from ferry.worker.services import WorkerServices
from tests.support.jobs import Client, create, finished, new_tenant, queued_job_ids, sleep_job
from tests.support.servers import Hooks, Mailbox, webhook_server
from tests.support.services import TEST_REDIS_URL


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    with webhook_server() as server:
        yield server


def events(settings: Settings, tenant: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
            f"{settings.redis_namespace}:events:stream:{tenant}"
        )
    finally:
        client.close()
    return [json.loads(fields[b"data"]) for _, fields in entries]


def job_events(settings: Settings, tenant: str, job_id: str) -> list[tuple[str, int]]:
    return [(e["status"], e["attempts"]) for e in events(settings, tenant) if e["jobId"] == job_id]


# -- handlers ---------------------------------------------------------------------------


async def test_sleep_completes_and_streams_its_events_in_order(
    app_client: Client, worker_settings: Settings
) -> None:
    tenant = new_tenant()
    job_id = await create(app_client, sleep_job(tenant, 100))
    job = await finished(app_client, job_id)
    assert (job["status"], job["attempts"], job["error"]) == ("COMPLETED", 1, None)
    await asyncio.sleep(0.1)
    stream = events(worker_settings, tenant)
    assert [(e["status"], e["seq"]) for e in stream] == [
        ("PENDING", 1), ("RUNNING", 2), ("COMPLETED", 3),
    ]  # fmt: skip
    assert stream[1] | {"status": None, "seq": None, "at": None} == {
        "type": "JOB_UPDATE", "tenantId": tenant, "jobId": job_id, "status": None,
        "attempts": 1, "error": None, "seq": None, "at": None,
    }  # fmt: skip


async def test_data_processing_stores_its_result(
    app_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"tenantId": new_tenant(), "type": "data_processing",
            "payload": {"operation": "percentiles", "values": [5, 1, 4, 2, 3], "percentiles": [50, 100]}}  # fmt: skip
    job = await finished(app_client, await create(app_client, body))
    assert job["status"] == "COMPLETED"
    assert job["result"] == {
        "operation": "percentiles",
        "count": 5,
        "value": {"p50": 3.0, "p100": 5.0},
    }
    # The result reaches the lifecycle beside Dramatiq, which has no Results middleware
    # and would warn about every job that returns a value.
    assert not [r for r in caplog.records if "returned a value" in r.getMessage()]


async def test_a_stored_payload_its_type_refuses_fails_without_retry(
    app_client: Client, worker_engine: AsyncEngine
) -> None:
    """A job stored before its type's rules changed (a mean of no values is refused at
    create now) can never run: it fails at once instead of being retried."""
    body = {
        "tenantId": new_tenant(),
        "type": "data_processing",
        "payload": {"operation": "mean", "values": [1]},
        "delayMs": 500,
    }
    job_id = await create(app_client, body)
    async with worker_engine.begin() as conn:
        stored = {"operation": "mean", "values": []}
        await conn.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(payload=stored))
    job = await finished(app_client, job_id)
    assert (job["status"], job["attempts"]) == ("FAILED", 1)
    assert "the payload does not fit the data_processing type" in job["error"], job["error"]
    assert "at least 1 value" in job["error"]


async def test_email_is_sent_over_smtp(app_client: Client, mail: Mailbox) -> None:
    subject = f"hello {uuid.uuid4()}"
    body = {"tenantId": new_tenant(), "type": "email",
            "payload": {"to": "ada@example.test", "subject": subject, "body": "Hi Ada"}}  # fmt: skip
    job = await finished(app_client, await create(app_client, body))
    assert job["status"] == "COMPLETED"
    assert job["result"]["via"] == "smtp"
    [message] = [m for m in mail.messages if m["Subject"] == subject]
    assert message["To"] == "ada@example.test"
    assert message["Message-ID"] == job["result"]["messageId"]
    assert message.get_payload().strip() == "Hi Ada"  # type: ignore[union-attr]


async def test_email_without_smtp_goes_to_the_outbox(
    worker_settings: Settings, tmp_path: Path
) -> None:
    from ferry.jobs.builtin.email import deliver
    from ferry.jobs.payloads import EmailPayload

    settings = msgspec.structs.replace(
        worker_settings, smtp_url=None, outbox_path=str(tmp_path / "out.mbox")
    )
    for n in range(3):
        assert (
            deliver(EmailPayload(to="b@example.test", subject=f"n{n}"), settings)["via"] == "outbox"
        )
    assert [m["Subject"] for m in mailbox.mbox(settings.outbox_path)] == ["n0", "n1", "n2"]


async def test_webhook_succeeds_on_2xx_with_a_signature(app_client: Client, hooks: Hooks) -> None:
    path = f"/status/201/{uuid.uuid4()}"
    body = {"tenantId": new_tenant(), "type": "webhook",
            "payload": {"url": hooks.base + path, "body": {"event": "ping"}, "headers": {"X-Extra": "1"}}}  # fmt: skip
    job = await finished(app_client, await create(app_client, body))
    assert (job["status"], job["result"]["status"]) == ("COMPLETED", 201)
    [request] = hooks.received(path)
    assert request["method"] == "POST"
    assert json.loads(request["body"]) == {"event": "ping"}
    assert request["headers"]["X-Extra"] == "1"
    expected = hmac.new(b"hook-secret", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Ferry-Signature"] == f"sha256={expected}"


async def test_webhook_5xx_is_retried_with_backoff_until_it_succeeds(
    app_client: Client, hooks: Hooks, worker_settings: Settings
) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    body = {
        "tenantId": tenant,
        "type": "webhook",
        "payload": {"url": f"{hooks.base}/flaky/{key}?fail=2"},
    }
    job_id = await create(app_client, body)
    job = await finished(app_client, job_id)
    assert (job["status"], job["attempts"], job["error"]) == ("COMPLETED", 3, None)
    assert len(hooks.received(f"/flaky/{key}")) == 3
    await asyncio.sleep(0.1)
    assert job_events(worker_settings, tenant, job_id) == [
        ("PENDING", 0),
        ("RUNNING", 1),
        ("PENDING", 1),
        ("RUNNING", 2),
        ("PENDING", 2),
        ("RUNNING", 3),
        ("COMPLETED", 3),
    ]
    retried = [e for e in events(worker_settings, tenant) if e["status"] == "PENDING"][1:]
    assert all("503" in e["error"] for e in retried)


async def test_exhausted_retries_leave_a_failed_dead_letter(
    app_client: Client, hooks: Hooks
) -> None:
    path = f"/status/500/{uuid.uuid4()}"
    body = {
        "tenantId": new_tenant(),
        "type": "webhook",
        "payload": {"url": hooks.base + path},
        "maxAttempts": 3,
    }
    job = await finished(app_client, await create(app_client, body))
    assert (job["status"], job["attempts"]) == ("FAILED", 3)
    assert "answered 500" in job["error"]
    assert job["finishedAt"] is not None and job["nextRunAt"] is None
    assert len(hooks.received(path)) == 3


@pytest.mark.parametrize("code", [400, 404, 410])
async def test_webhook_4xx_fails_at_once(app_client: Client, hooks: Hooks, code: int) -> None:
    path = f"/status/{code}/{uuid.uuid4()}"
    body = {"tenantId": new_tenant(), "type": "webhook", "payload": {"url": hooks.base + path}}
    job = await finished(app_client, await create(app_client, body))
    assert (job["status"], job["attempts"]) == ("FAILED", 1)
    assert f"answered {code}" in job["error"]


async def test_webhook_429_and_timeouts_are_retried(app_client: Client, hooks: Hooks) -> None:
    slow = {"tenantId": new_tenant(), "type": "webhook", "maxAttempts": 2,
            "payload": {"url": f"{hooks.base}/slow?ms=400", "timeoutMs": 100}}  # fmt: skip
    job = await finished(app_client, await create(app_client, slow))
    assert (job["status"], job["attempts"]) == ("FAILED", 2)
    assert "within 100 ms" in job["error"]
    limited = {"tenantId": new_tenant(), "type": "webhook", "maxAttempts": 2,
               "payload": {"url": f"{hooks.base}/status/429"}}  # fmt: skip
    assert (await finished(app_client, await create(app_client, limited)))["attempts"] == 2


async def test_a_job_over_its_time_limit_fails_that_attempt(app_client: Client) -> None:
    job = await finished(
        app_client, await create(app_client, sleep_job(new_tenant(), 5000, maxAttempts=1))
    )
    assert (job["status"], job["error"]) == ("FAILED", "time limit exceeded")


# -- the claim --------------------------------------------------------------------------


async def test_duplicate_messages_run_a_job_once(
    app_client: Client, worker_settings: Settings
) -> None:
    tenant = new_tenant()
    job_id = await create(app_client, sleep_job(tenant, 200))
    broker = current_broker()
    for _ in range(5):
        broker.enqueue(job_message(job_id, "sleep", tenant))
    job = await finished(app_client, job_id)
    await asyncio.sleep(0.5)  # let the duplicates arrive and be skipped
    assert (job["status"], job["attempts"]) == ("COMPLETED", 1)
    assert job_events(worker_settings, tenant, job_id) == [
        ("PENDING", 0), ("RUNNING", 1), ("COMPLETED", 1),
    ]  # fmt: skip


async def test_a_deleted_jobs_message_is_skipped(app_client: Client) -> None:
    job_id = await create(app_client, sleep_job(new_tenant(), delayMs=300))
    assert (await app_client.delete(f"/jobs/{job_id}")).status_code == 204
    await asyncio.sleep(0.6)
    # The worker skipped the message and still works.
    assert (await finished(app_client, await create(app_client, sleep_job(new_tenant()))))[
        "status"
    ] == "COMPLETED"


async def test_cancel_aborts_a_running_job(app_client: Client, worker_settings: Settings) -> None:
    tenant = new_tenant()
    job_id = await create(app_client, sleep_job(tenant, 1400))
    await finished(app_client, job_id, statuses={"RUNNING"})
    response = await app_client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "CANCELLED"
    await asyncio.sleep(1.6)  # past the end of the sleep: an abort kept it from completing
    job = (await app_client.get(f"/jobs/{job_id}")).json()
    assert (job["status"], job["result"]) == ("CANCELLED", None)
    # The abort's outcome matched no RUNNING row: CANCELLED is the last event.
    assert job_events(worker_settings, tenant, job_id) == [
        ("PENDING", 0), ("RUNNING", 1), ("CANCELLED", 1),
    ]  # fmt: skip


async def test_a_message_is_acked_only_once_its_outcome_is_committed(
    app_client: Client, worker_settings: Settings, worker_engine: AsyncEngine
) -> None:
    """The worker thread does not wait for the outcome's write; the ack does."""
    job_id = await create(app_client, sleep_job(new_tenant(), 600))
    await finished(app_client, job_id, statuses={"RUNNING"})
    async with worker_engine.connect() as locker:
        # Hold the row: the outcome's UPDATE waits for this transaction.
        await locker.execute(select(Job.id).where(Job.id == uuid.UUID(job_id)).with_for_update())
        await asyncio.sleep(1.2)  # the handler has returned meanwhile
        assert (await app_client.get(f"/jobs/{job_id}")).json()["status"] == "RUNNING"
        assert job_id in queued_job_ids(worker_settings.redis_namespace)  # not acked
        await locker.rollback()
    assert (await finished(app_client, job_id))["status"] == "COMPLETED"
    for _ in range(100):
        if job_id not in queued_job_ids(worker_settings.redis_namespace):
            break
        await asyncio.sleep(0.02)
    assert job_id not in queued_job_ids(worker_settings.redis_namespace)  # acked after


async def test_batching_writes_many_transitions_per_statement(app_client: Client) -> None:
    lifecycle = next(m for m in current_broker().middleware if isinstance(m, WorkerServices))
    tenant = new_tenant()
    statements, transitions = lifecycle.writer.statements, lifecycle.writer.transitions
    ids = (await app_client.post("/jobs/batch", json={"jobs": [sleep_job(tenant)] * 300})).json()[
        "jobIds"
    ]
    for job_id in ids:
        assert (await finished(app_client, job_id))["status"] == "COMPLETED"
    written = lifecycle.writer.transitions - transitions
    assert written >= 600  # a claim and an outcome per job
    assert lifecycle.writer.statements - statements < written / 2


# -- replay ---------------------------------------------------------------------------


async def test_bulk_replay_of_dead_letters(app_client: Client, hooks: Hooks) -> None:
    tenant = new_tenant()
    bad = {  # a 4xx fails at once, every time
        "tenantId": tenant,
        "type": "webhook",
        "payload": {"url": f"{hooks.base}/status/400/{uuid.uuid4()}"},
    }
    failed = [await create(app_client, bad) for _ in range(3)]
    done = await create(app_client, sleep_job(tenant))
    for job_id in [*failed, done]:
        await finished(app_client, job_id)

    by_filter = await app_client.post("/jobs/retry", json={"tenantId": tenant, "type": "webhook"})
    assert by_filter.status_code == 200
    assert by_filter.json()["requeued"] == 3
    assert set(by_filter.json()["jobIds"]) == set(failed)
    for job_id in failed:  # replayed, and failed again
        job = await finished(app_client, job_id, statuses={"FAILED"})
        assert job["attempts"] == 1

    by_ids = await app_client.post(
        "/jobs/retry", json={"tenantId": tenant, "ids": [failed[0], done]}
    )
    assert by_ids.json() == {"requeued": 1, "jobIds": [failed[0]]}  # COMPLETED is not a dead letter
    other_tenant = await app_client.post(
        "/jobs/retry", json={"tenantId": new_tenant(), "ids": failed}
    )
    assert other_tenant.json()["requeued"] == 0
    assert (
        await app_client.post("/jobs/retry", json={"tenantId": tenant, "ids": []})
    ).status_code == 400


def test_actors_are_declared_for_every_job_type() -> None:
    assert set(dramatiq.get_broker().actors) >= {"sleep", "email", "webhook", "data_processing"}
