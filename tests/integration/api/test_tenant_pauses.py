"""`POST /tenants/{id}/pause` and `/resume` through the real app (no worker): the state in
PostgreSQL, shown by `/jobs/stats` and `/metrics`; held jobs sent again on resume."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.jobs import Client, create, new_tenant, queued_job_ids, sleep_job


async def pauses(client: Client, tenant: str, action: str, **params: str) -> dict[str, object]:
    response = await client.post(f"/tenants/{tenant}/{action}", params=params)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


async def stats(client: Client, tenant: str) -> tuple[object, object]:
    answer = (await client.get("/jobs/stats", params={"tenantId": tenant})).json()
    return answer["paused"], answer["pausedTypes"]


async def test_pause_and_resume_a_tenant_and_a_type(client: Client) -> None:
    tenant = new_tenant()
    assert await stats(client, tenant) == (False, [])
    assert await pauses(client, tenant, "pause", type="email") == {
        "tenantId": tenant, "paused": False, "pausedTypes": ["email"], "resent": 0,
    }  # fmt: skip
    await pauses(client, tenant, "pause")
    await pauses(client, tenant, "pause")  # twice is once
    assert await stats(client, tenant) == (True, ["email"])
    metrics = (await client.get("/metrics")).text
    assert f'ferry_tenant_paused{{tenant="{tenant}",type="*"}} 1.0' in metrics
    assert f'ferry_tenant_paused{{tenant="{tenant}",type="email"}} 1.0' in metrics
    await pauses(client, tenant, "resume", type="email")
    assert await stats(client, tenant) == (True, [])
    await pauses(client, tenant, "pause", type="sleep")
    await pauses(client, tenant, "resume")  # every pause of the tenant
    assert await stats(client, tenant) == (False, [])
    assert f'tenant="{tenant}"' not in (await client.get("/metrics")).text


async def test_resume_sends_the_jobs_the_pause_held(client: Client, namespace: str) -> None:
    tenant = new_tenant()
    await pauses(client, tenant, "pause")
    job_id = await create(client, sleep_job(tenant))
    # Created and sent as ever (a worker skips its message and leaves it PENDING). No
    # worker here: the message still waits, and the resume sends one more (a duplicate
    # is harmless, one claim wins).
    assert job_id in queued_job_ids(namespace)
    resumed = await pauses(client, tenant, "resume")
    assert resumed["resent"] == 1
    # Sent a heartbeat later (HEARTBEAT_MS), once every worker has read the pause gone.
    assert queued_job_ids(namespace).count(job_id) == 1
    for _ in range(100):
        if queued_job_ids(namespace).count(job_id) == 2:
            break
        await asyncio.sleep(0.05)
    assert queued_job_ids(namespace).count(job_id) == 2  # sent again
    # A resume that lifts nothing sends nothing.
    assert (await pauses(client, tenant, "resume"))["resent"] == 0


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/tenants/t-1/pause", {"type": "teleport"}, 400),
        ("/tenants/t-1/resume", {"type": ""}, 400),
        ("/tenants/bad%20id/pause", {}, 400),
    ],
)
async def test_bad_pauses_are_refused(
    client: Client, path: str, params: dict[str, str], status: int
) -> None:
    response = await client.post(path, params=params)
    assert response.status_code == status, response.text
    if params:
        assert response.json()["extra"][0]["key"] == "type"
    assert await stats(client, "t-1") == (False, [])
