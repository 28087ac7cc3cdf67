"""`GET /jobs/{id}?wait=N`: a long poll that answers once the job has ended, by listening
to the tenant's events (a real worker inside the app, on PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio

from tests.support.jobs import Client, create, finished, new_tenant, sleep_job


async def test_a_wait_answers_with_the_ended_job(app_client: Client) -> None:
    job_id = await create(app_client, sleep_job(new_tenant(), 300))
    answer = await app_client.get(f"/jobs/{job_id}", params={"wait": 20})
    assert answer.status_code == 200
    assert answer.json()["status"] == "COMPLETED"


async def test_a_wait_that_runs_out_answers_with_the_job_as_it_is(app_client: Client) -> None:
    job_id = await create(app_client, sleep_job(new_tenant(), 1_400))
    answer = await app_client.get(f"/jobs/{job_id}", params={"wait": 1})
    assert answer.json()["status"] in ("PENDING", "RUNNING")
    assert (await finished(app_client, job_id))["status"] == "COMPLETED"


async def test_waits_on_jobs_of_one_tenant_each_get_their_own(app_client: Client) -> None:
    tenant = new_tenant()
    short = await create(app_client, sleep_job(tenant, 100))
    long = await create(app_client, sleep_job(tenant, 1_200))
    answers = await asyncio.gather(
        *(app_client.get(f"/jobs/{job_id}", params={"wait": 20}) for job_id in (short, long))
    )
    assert [a.json()["status"] for a in answers] == ["COMPLETED", "COMPLETED"]


async def test_a_wait_beyond_the_limit_is_refused(app_client: Client) -> None:
    job_id = await create(app_client, sleep_job(new_tenant()))
    answer = await app_client.get(f"/jobs/{job_id}", params={"wait": 61})
    assert answer.status_code == 400
    assert "wait" in answer.text
