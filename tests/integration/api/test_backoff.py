"""A job's own backoff (`retryBaseMs`, `retryCapMs`) over the API: within the bounds of a
job type's policy (ferry.jobs.registry), its cap not below its base once the half it
leaves out is its type's, a 400 naming the field otherwise; stored on the row and shown;
part of an Idempotency-Key's request; documented by /schema. The real app on PostgreSQL
and Redis, no worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from ferry.app import create_app
from ferry.jobs.registry import MAX_BACKOFF_MS
from ferry.settings import Settings
from tests.support.jobs import Client, create, new_tenant, sleep_job

# The deployment's backoff of the session's app (Settings' defaults): a sleep job's.
TYPE_BASE_MS, TYPE_CAP_MS = 2_000, 32_000


async def refused(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The one error of a 400 answer."""
    response = await client.post(path, json=body)
    assert response.status_code == 400, response.text
    [error] = response.json()["extra"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("retryBaseMs", -1, "Expected `int` >= 0"),
        ("retryCapMs", -1, "Expected `int` >= 0"),
        ("retryBaseMs", MAX_BACKOFF_MS + 1, "Expected `int` <= 604800000"),
        ("retryCapMs", MAX_BACKOFF_MS + 1, "Expected `int` <= 604800000"),
        ("retryCapMs", "5000", "Expected `int | null`, got `str`"),
        ("maxAttempts", 0, "Expected `int` >= 1"),
        ("maxAttempts", 26, "Expected `int` <= 25"),
    ],
)
async def test_out_of_bounds_is_a_400_naming_the_field(
    client: Client, field: str, value: Any, message: str
) -> None:
    body = sleep_job(new_tenant(), **{field: value})
    error = await refused(client, "/jobs", body)
    assert (error["key"], error["message"]) == (field, message)
    # In a batch, at its place; nothing is created.
    error = await refused(client, "/jobs/batch", {"jobs": [sleep_job(body["tenantId"]), body]})
    assert (error["key"], error["message"]) == (f"jobs[1].{field}", message)


@pytest.mark.parametrize(
    ("own", "field", "message"),
    [
        (
            {"retryBaseMs": 5_000, "retryCapMs": 4_999},
            "retryCapMs",
            "is less than retryBaseMs (5,000 ms)",
        ),
        (
            {"retryCapMs": TYPE_BASE_MS - 1},
            "retryCapMs",
            "is less than the job type's retry base, 2,000 ms",
        ),
        (
            {"retryBaseMs": TYPE_CAP_MS + 1},
            "retryBaseMs",
            "is more than the job type's retry cap, 32,000 ms: give retryCapMs too",
        ),
    ],
)
async def test_a_cap_below_the_base_is_a_400_naming_the_field(
    client: Client, own: dict[str, int], field: str, message: str
) -> None:
    body = sleep_job(new_tenant(), **own)
    error = await refused(client, "/jobs", body)
    assert (error["key"], error["message"]) == (field, message)
    error = await refused(client, "/jobs/batch", {"jobs": [sleep_job(body["tenantId"]), body]})
    assert (error["key"], error["message"]) == (f"jobs[1].{field}", message)


@pytest.mark.parametrize(
    "own",
    [
        {},
        {"retryBaseMs": 0, "retryCapMs": 0},
        {"retryBaseMs": TYPE_CAP_MS},  # up to the type's cap
        {"retryCapMs": TYPE_BASE_MS},  # down to the type's base
        {"retryBaseMs": 60_000, "retryCapMs": MAX_BACKOFF_MS},  # both: the type's do not count
        {"maxAttempts": 25},
    ],
)
async def test_within_bounds_is_created(client: Client, own: dict[str, int]) -> None:
    await create(client, sleep_job(new_tenant(), **own))


async def test_the_backoff_is_stored_and_shown(client: Client) -> None:
    tenant = new_tenant()
    job_id = await create(client, sleep_job(tenant, retryBaseMs=100, retryCapMs=400))
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["retryBaseMs"], job["retryCapMs"]) == (100, 400)
    response = await client.post(
        "/jobs/batch",
        json={"jobs": [sleep_job(tenant, retryCapMs=60_000), sleep_job(tenant)]},
    )
    assert response.status_code == 201, response.text
    first, second = response.json()["jobIds"]
    shown = [(await client.get(f"/jobs/{job_id}")).json() for job_id in (first, second)]
    assert [(job["retryBaseMs"], job["retryCapMs"]) for job in shown] == [
        (None, 60_000),  # the base stays its type's
        (None, None),
    ]


async def test_a_job_without_its_own_backoff_shows_none(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant()))
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["retryBaseMs"], job["retryCapMs"]) == (None, None)


async def test_an_idempotency_keys_request_includes_the_backoff(client: Client) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    headers = {"Idempotency-Key": key}
    body = sleep_job(tenant, retryBaseMs=100)
    first = await client.post("/jobs", json=body, headers=headers)
    again = await client.post("/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    for other in (sleep_job(tenant, retryBaseMs=101), sleep_job(tenant), {**body, "retryCapMs": 9}):
        response = await client.post("/jobs", json=other, headers=headers)
        assert response.status_code in (400, 409), response.text
        if "retryCapMs" not in other:  # (that one is refused before the key is looked at)
            assert response.status_code == 409, response.text


def bound(schema: dict[str, Any], key: str) -> Any:
    """A bound of a nullable field: Litestar puts it beside `oneOf`, or in its branch."""
    branches = [branch.get(key) for branch in schema.get("oneOf", []) if key in branch]
    return schema.get(key, branches[0] if branches else None)


async def test_the_openapi_document_shows_the_fields_and_their_bounds(client: Client) -> None:
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    for name in ("NewSleepJob", "NewEmailJob", "JobPatch"):
        properties = schemas[name]["properties"]
        for field in ("retryBaseMs", "retryCapMs"):
            assert {"type": "integer"} in properties[field]["oneOf"], name
            # (Litestar 2 leaves out a nullable field's minimum when it is 0.)
            assert bound(properties[field], "maximum") == MAX_BACKOFF_MS, name
        assert (
            bound(properties["maxAttempts"], "minimum"),
            bound(properties["maxAttempts"], "maximum"),
        ) == (1, 25)


@pytest.fixture
async def tight(settings: Settings) -> AsyncIterator[Client]:
    """An app whose deployment backoff is 100 ms doubling up to 1 s."""
    tighter = msgspec.structs.replace(settings, retry_base_ms=100, retry_cap_ms=1_000)
    async with AsyncTestClient(app=create_app(tighter, run_worker=False)) as client:
        yield client


async def test_the_half_left_out_is_the_deployments_when_the_type_has_none(
    tight: Client,
) -> None:
    error = await refused(tight, "/jobs", sleep_job(new_tenant(), retryBaseMs=5_000))
    assert (error["key"], error["message"]) == (
        "retryBaseMs",
        "is more than the job type's retry cap, 1,000 ms: give retryCapMs too",
    )
    await create(tight, sleep_job(new_tenant(), retryCapMs=500))  # above its base, 100 ms


async def test_patch_changes_the_backoff_of_a_pending_job(client: Client) -> None:
    job_id = await create(client, sleep_job(new_tenant(), retryBaseMs=100))
    response = await client.patch(f"/jobs/{job_id}", json={"retryCapMs": 500})
    assert response.status_code == 200, response.text
    assert (response.json()["retryBaseMs"], response.json()["retryCapMs"]) == (100, 500)
    # Below the job's own base: a 400 naming the field, nothing changed.
    response = await client.patch(f"/jobs/{job_id}", json={"retryCapMs": 50})
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["key"] == "retryCapMs"
    response = await client.patch(f"/jobs/{job_id}", json={"retryBaseMs": MAX_BACKOFF_MS + 1})
    assert response.status_code == 400, response.text
    assert response.json()["extra"][0]["key"] == "retryBaseMs"
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["retryBaseMs"], job["retryCapMs"]) == (100, 500)
