"""Every /jobs route through the real app on PostgreSQL and Redis (no worker running)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.jobs import (
    Client,
    count_rows,
    create,
    force_status,
    new_tenant,
    queued_job_ids,
    sleep_job,
)

JOB_FIELDS = {
    "id", "tenantId", "type", "payload", "status", "attempts", "maxAttempts", "error",
    "result", "createdAt", "updatedAt", "startedAt", "finishedAt", "nextRunAt",
    "progress", "progressMessage", "retryBaseMs", "retryCapMs", "scheduleId", "scheduledFor",
    "priority",
}  # fmt: skip


# -- create ---------------------------------------------------------------------------


async def test_create_stores_the_job_and_enqueues_it_after_commit(
    client: Client, namespace: str
) -> None:
    # The seeds' curl example, as written.
    body = {"tenantId": "tenant-1", "type": "sleep", "payload": {"delayMs": 1000}}
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201
    created = response.json()
    assert created["status"] == "PENDING"
    assert response.headers["location"] == f"/jobs/{created['jobId']}"
    job = (await client.get(response.headers["location"])).json()
    assert set(job) == JOB_FIELDS
    assert job["tenantId"] == "tenant-1"
    assert job["payload"] == {"delayMs": 1000}
    assert (job["status"], job["attempts"], job["maxAttempts"]) == ("PENDING", 0, 5)
    assert created["jobId"] in queued_job_ids(namespace)


async def test_every_job_type_is_accepted(client: Client) -> None:
    tenant = new_tenant()
    bodies = [
        sleep_job(tenant, 5),
        {"tenantId": tenant, "type": "email", "payload": {"to": "a@example.test", "subject": "Hi"}},
        {
            "tenantId": tenant,
            "type": "webhook",
            "payload": {"url": "https://example.test/hook", "method": "PUT", "timeoutMs": 500},
        },
        {
            "tenantId": tenant,
            "type": "data_processing",
            "payload": {"operation": "mean", "values": [1, 2, 3.5]},
        },
    ]
    for body in bodies:
        job_id = await create(client, body)
        job = (await client.get(f"/jobs/{job_id}")).json()
        assert job["type"] == body["type"]
        for key, value in body["payload"].items():
            assert job["payload"][key] == value


async def test_delay_and_max_attempts(client: Client, namespace: str) -> None:
    before = datetime.now().astimezone()
    job_id = await create(client, sleep_job(new_tenant(), delayMs=60_000, maxAttempts=2))
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["maxAttempts"] == 2
    next_run = datetime.fromisoformat(job["nextRunAt"])
    assert before + timedelta(seconds=59) < next_run < before + timedelta(seconds=62)
    # A delayed message waits on the delay queue, not on the ready queue.
    assert job_id in queued_job_ids(namespace, "jobs.DQ")
    assert job_id not in queued_job_ids(namespace)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": "soon"}}, "payload.delayMs"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": -1}}, "payload.delayMs"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 600_001}}, "payload.delayMs"),
        ({"tenantId": "t", "type": "sleep", "payload": {}}, "payload.delayMs"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1, "x": 1}}, "payload.x"),
        ({"type": "sleep", "payload": {"delayMs": 1}}, "tenantId"),
        ({"tenantId": "", "type": "sleep", "payload": {"delayMs": 1}}, "tenantId"),
        ({"tenantId": "a b", "type": "sleep", "payload": {"delayMs": 1}}, "tenantId"),
        ({"tenantId": "t", "type": "teleport", "payload": {}}, "type"),
        ({"tenantId": "t", "payload": {"delayMs": 1}}, "type"),
        ({"tenantId": "t", "type": "sleep"}, "payload"),
        ({"tenantId": "t", "type": "email", "payload": {"to": "nobody", "subject": "x"}}, "payload.to"),
        ({"tenantId": "t", "type": "webhook", "payload": {"url": "ftp://x.test"}}, "payload.url"),
        ({"tenantId": "t", "type": "webhook", "payload": {"url": "http://x.test", "method": "BREW"}}, "payload.method"),
        ({"tenantId": "t", "type": "data_processing", "payload": {"operation": "pray", "values": []}}, "payload.operation"),
        ({"tenantId": "t", "type": "data_processing", "payload": {"operation": "sum", "values": ["a"]}}, "payload.values[0]"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1}, "maxAttempts": 0}, "maxAttempts"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1}, "maxAttempts": 26}, "maxAttempts"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1}, "delayMs": -5}, "delayMs"),
        ({"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1}, "priority": 10}, "priority"),
    ],
)  # fmt: skip
async def test_invalid_jobs_are_400_naming_the_field_and_store_nothing(
    client: Client, engine: AsyncEngine, body: dict[str, Any], key: str
) -> None:
    rows = await count_rows(engine)
    response = await client.post("/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status_code"] == 400
    [detail] = error["extra"]
    assert detail["key"] == key, detail
    assert detail["message"]
    assert await count_rows(engine) == rows


async def test_unknown_type_lists_the_valid_types(client: Client) -> None:
    response = await client.post("/jobs", json={"tenantId": "t", "type": "x", "payload": {}})
    message = response.json()["extra"][0]["message"]
    for job_type in ("sleep", "email", "webhook", "data_processing"):
        assert job_type in message


@pytest.mark.parametrize(
    "raw",
    [b"{bad", b"", b"[1,2]", b"null", b'"text"', b'{"tenantId": "t"', b"\xff\xfe",
     b'{"tenantId": "t\xff", "type": "sleep", "payload": {"delayMs": 1}}',
     b'{"tenantId": "t", "type": "webhook", "payload": {"url": "http://a.test", "body": '
     + b"[" * 10_000 + b"]" * 10_000 + b"}}"],
)  # fmt: skip
async def test_malformed_bodies_are_400_json(
    client: Client, engine: AsyncEngine, raw: bytes
) -> None:
    rows = await count_rows(engine)
    response = await client.post("/jobs", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400
    assert await count_rows(engine) == rows


async def test_oversize_body_is_413(client: Client, engine: AsyncEngine) -> None:
    rows = await count_rows(engine)
    huge = {"tenantId": "t", "type": "data_processing",
            "payload": {"operation": "sum", "values": [1.5] * 300_000}}  # fmt: skip
    response = await client.post("/jobs", json=huge)
    assert response.status_code == 413
    assert response.json()["status_code"] == 413
    assert await count_rows(engine) == rows


# -- batch ----------------------------------------------------------------------------


async def test_batch_creates_all_jobs_in_order(client: Client, namespace: str) -> None:
    tenant = new_tenant()
    bodies = [sleep_job(tenant, i) for i in range(25)]
    response = await client.post("/jobs/batch", json={"jobs": bodies})
    assert response.status_code == 201, response.text
    ids = response.json()["jobIds"]
    assert len(ids) == len(set(ids)) == 25
    for i, job_id in enumerate(ids):
        job = (await client.get(f"/jobs/{job_id}")).json()
        assert job["payload"] == {"delayMs": i}
    assert set(ids) <= set(queued_job_ids(namespace))


async def test_batch_with_one_bad_job_creates_nothing(client: Client, engine: AsyncEngine) -> None:
    rows = await count_rows(engine)
    tenant = new_tenant()
    bodies = [sleep_job(tenant), {"tenantId": tenant, "type": "sleep", "payload": {"delayMs": "x"}}]
    response = await client.post("/jobs/batch", json={"jobs": bodies})
    assert response.status_code == 400
    assert response.json()["extra"][0]["key"] == "jobs[1].payload.delayMs"
    assert await count_rows(engine) == rows


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_limits(client: Client, engine: AsyncEngine, size: int) -> None:
    rows = await count_rows(engine)
    response = await client.post("/jobs/batch", json={"jobs": [sleep_job("t")] * size})
    assert response.status_code == 400
    assert response.json()["extra"][0]["key"] == "jobs"
    assert await count_rows(engine) == rows


async def test_batch_of_1000_is_accepted(client: Client) -> None:
    tenant = new_tenant()
    response = await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant)] * 1000})
    assert response.status_code == 201
    assert (await client.get("/jobs", params={"tenantId": tenant})).json()["total"] == 1000


async def test_text_with_a_nul_character_is_refused_and_creates_nothing(
    client: Client, engine: AsyncEngine
) -> None:
    """PostgreSQL's JSON cannot store U+0000: a 400, not a failed INSERT."""
    rows = await count_rows(engine)
    tenant = new_tenant()
    email = {
        "tenantId": tenant,
        "type": "email",
        "payload": {"to": "a@example.test", "subject": "a\x00"},
    }
    for path, body in (("/jobs", email), ("/jobs/batch", {"jobs": [sleep_job(tenant), email]})):
        response = await client.post(path, json=body)
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["detail"]
    assert await count_rows(engine) == rows
    job_id = await create(client, sleep_job(tenant))
    patched = await client.patch(f"/jobs/{job_id}", json={"payload": {"delayMs": 1, "x\x00": 1}})
    assert patched.status_code == 400
    assert (await client.get(f"/jobs/{job_id}")).json()["payload"] == {"delayMs": 0}


# -- list, get, stats -----------------------------------------------------------------


async def test_list_filters_and_defaults(client: Client, engine: AsyncEngine) -> None:
    tenant, other = new_tenant(), new_tenant()
    sleeps = [await create(client, sleep_job(tenant)) for _ in range(3)]
    email = await create(
        client, {"tenantId": tenant, "type": "email", "payload": {"to": "a@b.test", "subject": "s"}}
    )
    await create(client, sleep_job(other))
    await force_status(engine, sleeps[0], "FAILED")

    page = (await client.get("/jobs", params={"tenantId": tenant})).json()
    assert (page["total"], page["limit"], page["offset"]) == (4, 20, 0)
    assert [job["id"] for job in page["jobs"]] == [email, *reversed(sleeps)]  # newest first

    by_type = (await client.get("/jobs", params={"tenantId": tenant, "type": "email"})).json()
    assert [job["id"] for job in by_type["jobs"]] == [email]
    failed = (await client.get("/jobs", params={"tenantId": tenant, "status": "FAILED"})).json()
    assert [job["id"] for job in failed["jobs"]] == [sleeps[0]]
    both = {"tenantId": tenant, "status": "PENDING", "type": "sleep"}
    assert (await client.get("/jobs", params=both)).json()["total"] == 2


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"offset": "-1"},
     {"status": "DONE"}, {"type": "teleport"}, {"tenantId": ""}],
)  # fmt: skip
async def test_list_rejects_bad_queries(client: Client, params: dict[str, str]) -> None:
    response = await client.get("/jobs", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400


async def test_paging_is_stable_with_ties_in_created_at(
    client: Client, engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    response = await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant)] * 53})
    ids = set(response.json()["jobIds"])
    # A batch shares one created_at: only the id can order these rows.
    same_instant = datetime(2026, 1, 1).astimezone()
    for job_id in ids:
        await force_status(engine, job_id, "PENDING", created_at=same_instant)

    seen: list[str] = []
    for offset in range(0, 60, 7):
        page = (
            await client.get("/jobs", params={"tenantId": tenant, "limit": 7, "offset": offset})
        ).json()
        assert page["total"] == 53
        seen += [job["id"] for job in page["jobs"]]
    assert len(seen) == len(set(seen)) == 53
    assert set(seen) == ids
    assert seen == sorted(seen, key=uuid.UUID, reverse=True)


async def test_get_unknown_job_is_404(client: Client) -> None:
    response = await client.get(f"/jobs/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": response.json()["detail"]}
    assert (await client.get("/jobs/not-a-uuid")).status_code in (400, 404)


async def test_stats_count_per_status(client: Client, engine: AsyncEngine) -> None:
    tenant = new_tenant()
    ids = [await create(client, sleep_job(tenant)) for _ in range(6)]
    for job_id, status in zip(
        ids[1:], ["RUNNING", "COMPLETED", "COMPLETED", "FAILED", "CANCELLED"], strict=True
    ):
        await force_status(engine, job_id, status)
    stats = (await client.get("/jobs/stats", params={"tenantId": tenant})).json()
    del stats["waiting"], stats["oldestWaitMs"]  # the tenant's queue: see queue/test_fairness.py
    assert stats == {
        "tenantId": tenant, "total": 6, "pending": 1, "running": 1,
        "completed": 2, "failed": 1, "cancelled": 1, "paused": False, "pausedTypes": [],
    }  # fmt: skip
    everything = (await client.get("/jobs/stats")).json()
    assert everything["tenantId"] is None
    assert everything["total"] >= 6


# -- retry ----------------------------------------------------------------------------


async def test_retry_replays_a_failed_job(
    client: Client, engine: AsyncEngine, namespace: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, "FAILED", attempts=5, error="boom")
    before = queued_job_ids(namespace).count(job_id)
    response = await client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["attempts"], job["error"], job["finishedAt"]) == (
        "PENDING",
        0,
        None,
        None,
    )
    assert queued_job_ids(namespace).count(job_id) == before + 1


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "COMPLETED"])
async def test_retry_is_409_unless_failed_or_cancelled(
    client: Client, engine: AsyncEngine, status: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, status)
    response = await client.post(f"/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert response.json()["extra"] == {"status": status}
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == status


async def test_concurrent_retries_enqueue_exactly_once(
    client: Client, engine: AsyncEngine, namespace: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, "CANCELLED")
    before = queued_job_ids(namespace).count(job_id)
    responses = await asyncio.gather(*(client.post(f"/jobs/{job_id}/retry") for _ in range(20)))
    codes = sorted(response.status_code for response in responses)
    assert codes == [200] + [409] * 19
    assert queued_job_ids(namespace).count(job_id) == before + 1


async def test_retry_unknown_job_is_404(client: Client) -> None:
    assert (await client.post(f"/jobs/{uuid.uuid4()}/retry")).status_code == 404


# -- cancel ---------------------------------------------------------------------------


async def test_cancel_a_pending_job(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    response = await client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "CANCELLED"
    assert job["finishedAt"] is not None
    again = await client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409


@pytest.mark.parametrize("status", ["COMPLETED", "FAILED"])
async def test_cancel_a_finished_job_is_409(
    client: Client, engine: AsyncEngine, status: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, status)
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 409
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == status


async def test_cancel_unknown_job_is_404(client: Client) -> None:
    assert (await client.post(f"/jobs/{uuid.uuid4()}/cancel")).status_code == 404


# -- patch ----------------------------------------------------------------------------


async def test_patch_a_pending_job(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant(), 10))
    response = await client.patch(
        f"/jobs/{job_id}", json={"payload": {"delayMs": 20}, "maxAttempts": 3}
    )
    assert response.status_code == 200, response.text
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["payload"], job["maxAttempts"]) == ({"delayMs": 20}, 3)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"payload": {"delayMs": "x"}}, "payload.delayMs"),
        ({"payload": {"to": "a@b.test", "subject": "wrong type"}}, "payload.to"),
        ({"maxAttempts": 99}, "maxAttempts"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_patch_validates_against_the_job_type(
    client: Client, body: dict[str, Any], key: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant(), 10))
    response = await client.patch(f"/jobs/{job_id}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["key"] == key
    assert (await client.get(f"/jobs/{job_id}")).json()["payload"] == {"delayMs": 10}


async def test_patch_checks_the_payload_strictly_and_names_the_type(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant(), 10))
    response = await client.patch(f"/jobs/{job_id}", json={"payload": {"delayMs": "20"}})
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "invalid payload for a sleep job"
    email = {"to": "a@example.test", "subject": "s"}
    email_id = await create(client, {"tenantId": new_tenant(), "type": "email", "payload": email})
    response = await client.patch(
        f"/jobs/{email_id}", json={"payload": {**email, "subject": "a\nb"}}
    )
    assert response.json()["detail"] == "invalid payload for an email job"
    assert response.json()["extra"][0]["key"] == "payload.subject"
    assert "regex" not in response.text


async def test_bodies_must_be_json_and_posts_without_one_need_no_content_type(
    client: Client, engine: AsyncEngine
) -> None:
    rows = await count_rows(engine)
    body = b'{"tenantId": "t", "type": "sleep", "payload": {"delayMs": 1}}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "text/xml"):
        response = await client.post("/jobs", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, response.text
        assert response.json()["status_code"] == 415
    assert await count_rows(engine) == rows
    charset = {"Content-Type": "application/json; charset=utf-8"}
    job_id = await create(client, sleep_job(new_tenant()))
    assert (await client.post("/jobs", content=body, headers=charset)).status_code == 201
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    assert (await client.post(f"/jobs/{job_id}/retry")).status_code == 200


async def test_patch_without_changes_is_400(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    assert (await client.patch(f"/jobs/{job_id}", json={})).status_code == 400


async def test_patch_a_running_job_is_409(client: Client, engine: AsyncEngine) -> None:
    job_id = await create(client, sleep_job(new_tenant(), 10))
    await force_status(engine, job_id, "RUNNING")
    response = await client.patch(f"/jobs/{job_id}", json={"payload": {"delayMs": 1}})
    assert response.status_code == 409
    assert (await client.get(f"/jobs/{job_id}")).json()["payload"] == {"delayMs": 10}


async def test_patch_unknown_job_is_404(client: Client) -> None:
    response = await client.patch(f"/jobs/{uuid.uuid4()}", json={"maxAttempts": 2})
    assert response.status_code == 404


# -- delete ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["PENDING", "COMPLETED", "FAILED", "CANCELLED"])
async def test_delete_a_job_that_is_not_running(
    client: Client, engine: AsyncEngine, status: str
) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, status)
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 204
    assert (await client.get(f"/jobs/{job_id}")).status_code == 404
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 404


async def test_delete_a_running_job_is_409(client: Client, engine: AsyncEngine) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    await force_status(engine, job_id, "RUNNING")
    response = await client.delete(f"/jobs/{job_id}")
    assert response.status_code == 409
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "RUNNING"


# -- the rest of the HTTP surface -----------------------------------------------------


async def test_unknown_routes_and_methods_are_json(client: Client) -> None:
    missing = await client.get("/nothing/here")
    assert missing.status_code == 404
    assert missing.json()["status_code"] == 404
    wrong = await client.put("/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["status_code"] == 405
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


async def test_openapi_schema_documents_the_routes(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert {"/jobs", "/jobs/batch", "/jobs/stats", "/jobs/{job_id}", "/health/ready"} <= set(
        schema["paths"]
    )


async def test_over_limit_requests_are_4xx_with_a_message(client: Client) -> None:
    tenant = new_tenant()
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    webhook = {
        "tenantId": tenant,
        "type": "webhook",
        "payload": {"url": "https://example.test", "body": deep},
    }
    too_deep = await client.post("/jobs", json=webhook)
    assert too_deep.status_code == 400 and "nests deeper than 32" in too_deep.text
    too_many = await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant)] * 1001})
    assert too_many.status_code == 400 and "1000" in too_many.text
    too_long = await client.get("/jobs", params={"tenantId": tenant, "limit": 501})
    assert too_long.status_code == 400 and "limit" in too_long.text
    too_big = await client.post(
        "/jobs",
        content=b'{"tenantId": "' + b"x" * (1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert too_big.status_code == 413


async def test_the_counters_follow_every_kind_of_change(
    client: Client, engine: AsyncEngine
) -> None:
    """Totals and stats read trigger-kept counters on PostgreSQL: after creates, batch
    creates, transitions, cancels, retries and deletes they equal a count of the rows."""
    tenants = [new_tenant(), new_tenant()]
    ids = []
    for tenant in tenants:
        ids += [await create(client, sleep_job(tenant)) for _ in range(3)]
        batch = {"jobs": [sleep_job(tenant), {**sleep_job(tenant), "type": "email",
                 "payload": {"to": "a@example.test", "subject": "s"}}]}  # fmt: skip
        ids += (await client.post("/jobs/batch", json=batch)).json()["jobIds"]
    await force_status(engine, ids[0], "RUNNING")
    await force_status(engine, ids[1], "FAILED")
    await client.post(f"/jobs/{ids[1]}/retry")
    await client.post(f"/jobs/{ids[2]}/cancel")
    await client.delete(f"/jobs/{ids[3]}")
    await force_status(engine, ids[5], "COMPLETED")
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tenant_id, type, status, count(*) FROM jobs"
                 " WHERE tenant_id = ANY(:t) GROUP BY 1, 2, 3"), {"t": tenants}
        )  # fmt: skip
        counted = {(r[0], r[1], r[2]): r[3] for r in rows}
    for tenant in tenants:
        stats = (await client.get("/jobs/stats", params={"tenantId": tenant})).json()
        for status in ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"):
            expected = sum(n for (t, _, s), n in counted.items() if (t, s) == (tenant, status))
            assert stats[status.lower()] == expected, (tenant, status)
        for job_type in ("sleep", "email"):
            page = (await client.get("/jobs", params={"tenantId": tenant, "type": job_type})).json()
            assert page["total"] == sum(
                n for (t, ty, _), n in counted.items() if (t, ty) == (tenant, job_type)
            )
    assert (stats["total"], stats["completed"], stats["running"]) == (5, 1, 0)  # the second
    first = (await client.get("/jobs/stats", params={"tenantId": tenants[0]})).json()
    assert (first["running"], first["cancelled"], first["completed"], first["total"]) == (
        1, 1, 0, 4,
    )  # fmt: skip
