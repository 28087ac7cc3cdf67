"""Every /schedules route through the real app on PostgreSQL and Redis (no worker running,
so no schedule fires here: see worker/test_scheduler.py for the firing)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ferry.db.jobs import NotFound
from ferry.db.models import Schedule
from ferry.db.schedules import ScheduleStore
from tests.support.jobs import Client, new_tenant

SCHEDULE_FIELDS = {
    "id", "tenantId", "name", "cron", "timezone", "missed", "job", "paused", "description",
    "nextRunAt", "nextRuns", "lastRunAt", "lastJobId", "createdAt", "updatedAt",
}  # fmt: skip
SLEEP = {"type": "sleep", "payload": {"delayMs": 5}}
EMAIL = {
    "type": "email",
    "payload": {"to": "a@example.test", "subject": "Daily report", "body": "Hi"},
}
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def schedule(
    tenant: str, name: str = "nightly", cron: str = "0 9 * * *", **extra: Any
) -> dict[str, Any]:
    return {"tenantId": tenant, "name": name, "cron": cron, "job": SLEEP, **extra}


async def create(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST /schedules, which must answer 201; the schedule."""
    response = await client.post("/schedules", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def get(client: Client, schedule_id: str) -> dict[str, Any]:
    response = await client.get(f"/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def listed(client: Client, tenant: str, **params: Any) -> dict[str, Any]:
    response = await client.get("/schedules", params={"tenantId": tenant, **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def times(schedule: dict[str, Any]) -> list[datetime]:
    return [datetime.fromisoformat(time) for time in schedule["nextRuns"]]


def gaps(runs: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in itertools.pairwise(runs)]


def next_run(schedule: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(schedule["nextRunAt"])


def refused(response: Any, key: str) -> dict[str, Any]:
    """The one error of a 400 answer, which must name `key`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status_code"] == 400
    [error] = body["extra"]
    assert error["key"] == key, error
    assert error["message"]
    return dict(error)


# -- create ---------------------------------------------------------------------------


async def test_create_answers_the_schedule_with_its_next_due_times(client: Client) -> None:
    tenant = new_tenant()
    before = datetime.now(UTC)
    body = schedule(
        tenant, timezone="Europe/Berlin", missed="once", job={**EMAIL, "maxAttempts": 3}
    )
    response = await client.post("/schedules", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == SCHEDULE_FIELDS
    assert response.headers["location"] == f"/schedules/{created['id']}"
    uuid.UUID(created["id"])
    assert (created["tenantId"], created["name"], created["cron"]) == (
        tenant,
        "nightly",
        "0 9 * * *",
    )
    assert (created["timezone"], created["missed"], created["paused"]) == (
        "Europe/Berlin",
        "once",
        False,
    )
    assert created["job"] == {**EMAIL, "maxAttempts": 3, "priority": None}
    assert created["description"] == "At 09:00 every day"
    assert (created["lastRunAt"], created["lastJobId"]) == (None, None)
    assert created["createdAt"] == created["updatedAt"]
    assert datetime.fromisoformat(created["createdAt"]) >= before
    runs = times(created)
    assert len(runs) == 5
    assert runs == sorted(runs) and len(set(runs)) == 5
    assert runs[0] == next_run(created) > before
    # 09:00 in Berlin: 08:00Z in winter (CET), 07:00Z in summer (CEST), one a day.
    for run in runs:
        assert (run.hour, run.minute, run.second) in {(8, 0, 0), (7, 0, 0)}, run
        assert (run.astimezone(BERLIN).hour, run.astimezone(BERLIN).minute) == (9, 0), run
    assert len({run.astimezone(BERLIN).date() for run in runs}) == 5
    assert runs[-1] - runs[0] < timedelta(days=4, hours=2)
    # What the Location names is the same schedule.
    assert await get(client, response.headers["location"].rsplit("/", 1)[1]) == created


async def test_due_times_follow_the_time_zones_daylight_saving_time(client: Client) -> None:
    """On the 1st of March and of April at 09:00 in Berlin: March 1st is always CET
    (08:00Z) and April 1st always CEST (07:00Z), whatever today's date."""
    created = await create(
        client, schedule(new_tenant(), cron="0 9 1 3,4 *", timezone="Europe/Berlin")
    )
    runs = times(created)
    assert len(runs) == 5 and runs == sorted(runs)
    for run in runs:
        assert run.day == 1 and run.month in (3, 4), run
        assert (run.hour, run.minute) == ((8, 0) if run.month == 3 else (7, 0)), run
    assert {run.hour for run in runs} == {7, 8}


async def test_defaults_are_utc_and_skip(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    assert (created["timezone"], created["missed"]) == ("UTC", "skip")
    assert created["job"] == {**SLEEP, "maxAttempts": None, "priority": None}
    runs = times(created)
    assert [(run.hour, run.minute, run.second) for run in runs] == [(9, 0, 0)] * 5
    assert gaps(runs) == [timedelta(days=1)] * 4


async def test_six_fields_put_seconds_first(client: Client) -> None:
    created = await create(client, schedule(new_tenant(), cron="*/10 * * * * *"))
    runs = times(created)
    assert len(runs) == 5
    assert all(run.second % 10 == 0 and run.microsecond == 0 for run in runs), runs
    assert gaps(runs) == [timedelta(seconds=10)] * 4
    assert runs[0] == next_run(created)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 9 * * * *"}, "cron"),
        ({"cron": "99 * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": ""}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "/etc/localtime"}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"missed": "always"}, "missed"),
        ({"missed": None}, "missed"),
        ({"name": " leading space"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"colour": "red"}, "colour"),
        ({"job": {"type": "teleport", "payload": {}}}, "job.type"),
        ({"job": {"payload": {"delayMs": 1}}}, "job.type"),
        ({"job": {"type": "sleep"}}, "job.payload"),
        ({"job": {"type": "sleep", "payload": {"delayMs": "soon"}}}, "job.payload.delayMs"),
        ({"job": {"type": "sleep", "payload": {"delayMs": -1}}}, "job.payload.delayMs"),
        ({"job": {"type": "sleep", "payload": {"delayMs": 1, "x": 1}}}, "job.payload.x"),
        ({"job": {"type": "email", "payload": {"to": "nobody", "subject": "s"}}}, "job.payload.to"),
        ({"job": {**SLEEP, "maxAttempts": 0}}, "job.maxAttempts"),
        ({"job": {**SLEEP, "maxAttempts": 26}}, "job.maxAttempts"),
        ({"job": {**SLEEP, "priority": 10}}, "job.priority"),
    ],
)  # fmt: skip
async def test_invalid_schedules_are_400_naming_the_field_and_create_nothing(
    client: Client, change: dict[str, Any], key: str
) -> None:
    tenant = new_tenant()
    await create(client, schedule(tenant, name="existing"))
    response = await client.post("/schedules", json={**schedule(tenant), **change})
    refused(response, key)
    assert (await listed(client, tenant))["total"] == 1


@pytest.mark.parametrize("missing", ["tenantId", "name", "cron", "job"])
async def test_required_fields_are_named(client: Client, missing: str) -> None:
    tenant = new_tenant()
    body = schedule(tenant)
    del body[missing]
    refused(await client.post("/schedules", json=body), missing)
    assert (await listed(client, tenant))["total"] == 0


async def test_errors_say_what_is_expected(client: Client) -> None:
    tenant = new_tenant()
    missed = refused(await client.post("/schedules", json=schedule(tenant, missed="x")), "missed")
    assert "skip" in missed["message"] and "once" in missed["message"]
    job_type = refused(
        await client.post("/schedules", json=schedule(tenant, job={"type": "x", "payload": {}})),
        "job.type",
    )
    for name in ("sleep", "email", "webhook", "data_processing"):
        assert name in job_type["message"]
    cron = refused(await client.post("/schedules", json=schedule(tenant, cron="* * *")), "cron")
    assert "number of fields" in cron["message"]
    zone = refused(
        await client.post("/schedules", json=schedule(tenant, timezone="Mars/Olympus")), "timezone"
    )
    assert "Mars/Olympus" in zone["message"]
    assert (await listed(client, tenant))["total"] == 0


async def test_a_bad_tenant_id_is_said_to_be_a_tenant_id(client: Client) -> None:
    """Each pattern's words are its own (`ferry.fields.PATTERN_WORDS` is by regex)."""
    name = refused(await client.post("/schedules", json=schedule("t", name="-a")), "name")
    assert "schedule name" in name["message"]
    tenant = refused(await client.post("/schedules", json=schedule("a b")), "tenantId")
    assert "tenant id" in tenant["message"], f"tenantId error reads: {tenant['message']!r}"


async def test_text_with_a_nul_character_is_refused_and_creates_nothing(client: Client) -> None:
    tenant = new_tenant()
    for job in (
        {"type": "email", "payload": {"to": "a@example.test", "subject": "a\x00"}},
        {"type": "webhook", "payload": {"url": "https://example.test", "body": {"k\x00": 1}}},
    ):
        response = await client.post("/schedules", json=schedule(tenant, job=job))
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["detail"]
    refused(await client.post("/schedules", json=schedule(tenant, cron="0 9 * * *\x00")), "cron")
    refused(await client.post("/schedules", json=schedule(tenant, timezone="UTC\x00")), "timezone")
    assert (await listed(client, tenant))["total"] == 0


async def test_a_name_is_unique_per_tenant(client: Client) -> None:
    tenant, other = new_tenant(), new_tenant()
    first = await create(client, schedule(tenant))
    response = await client.post("/schedules", json=schedule(tenant, cron="*/5 * * * *"))
    assert response.status_code == 409, response.text
    assert response.json()["extra"] == {"key": "name", "source": "body"}
    assert (await listed(client, tenant))["schedules"] == [first]
    # Another tenant may use the name.
    theirs = await create(client, schedule(other))
    assert theirs["id"] != first["id"]
    assert [one["id"] for one in (await listed(client, other))["schedules"]] == [theirs["id"]]


async def test_concurrent_creates_of_one_name_create_one_schedule(client: Client) -> None:
    tenant = new_tenant()
    responses = await asyncio.gather(
        *(client.post("/schedules", json=schedule(tenant)) for _ in range(8))
    )
    assert sorted(response.status_code for response in responses) == [201] + [409] * 7
    assert (await listed(client, tenant))["total"] == 1


# -- list and get ---------------------------------------------------------------------


async def test_list_is_the_tenants_schedules_by_name(client: Client) -> None:
    tenant, other = new_tenant(), new_tenant()
    made = {
        name: await create(client, schedule(tenant, name)) for name in ("charlie", "alpha", "bravo")
    }
    theirs = await create(client, schedule(other, "alpha"))
    page = await listed(client, tenant)
    assert (page["total"], page["limit"], page["offset"]) == (3, 50, 0)
    assert [one["name"] for one in page["schedules"]] == ["alpha", "bravo", "charlie"]
    assert [one["id"] for one in page["schedules"]] == [
        made[n]["id"] for n in ("alpha", "bravo", "charlie")
    ]
    assert all(set(one) == SCHEDULE_FIELDS for one in page["schedules"])
    assert theirs["id"] not in {one["id"] for one in page["schedules"]}
    # Without a tenant (no keys): every tenant's.
    everyone = (await client.get("/schedules", params={"limit": 500})).json()
    assert everyone["total"] >= 4


async def test_list_pages(client: Client) -> None:
    tenant = new_tenant()
    names = [f"s{n:02}" for n in range(7)]
    for name in reversed(names):
        await create(client, schedule(tenant, name))
    seen = []
    for offset in range(0, 9, 3):
        page = await listed(client, tenant, limit=3, offset=offset)
        assert (page["total"], page["limit"], page["offset"]) == (7, 3, offset)
        seen += [one["name"] for one in page["schedules"]]
    assert seen == names
    beyond = await listed(client, tenant, limit=3, offset=7)
    assert (beyond["schedules"], beyond["total"]) == ([], 7)


@pytest.mark.parametrize(
    ("params", "key"),
    [({"limit": "0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "x"}, "limit"),
     ({"offset": "-1"}, "offset"), ({"tenantId": ""}, "tenantId"), ({"tenantId": "a b"}, "tenantId")],
)  # fmt: skip
async def test_list_rejects_bad_queries(client: Client, params: dict[str, str], key: str) -> None:
    refused(await client.get("/schedules", params=params), key)


async def test_get_unknown_schedule_is_404(client: Client) -> None:
    response = await client.get(f"/schedules/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json() == {"status_code": 404, "detail": response.json()["detail"]}
    assert "not found" in response.json()["detail"]
    assert (await client.get("/schedules/not-a-uuid")).status_code in (400, 404)


# -- patch ----------------------------------------------------------------------------


async def test_patch_the_expression_moves_the_due_times(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    response = await client.patch(f"/schedules/{created['id']}", json={"cron": "30 18 * * 1-5"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["cron"] == "30 18 * * 1-5"
    assert changed["description"] != created["description"]
    runs = times(changed)
    assert len(runs) == 5 and runs == sorted(runs) and runs[0] == next_run(changed)
    for run in runs:
        assert (run.hour, run.minute, run.weekday() < 5) == (18, 30, True), run
    assert (changed["timezone"], changed["name"], changed["job"]) == (
        "UTC",
        "nightly",
        created["job"],
    )
    assert changed["createdAt"] == created["createdAt"]
    assert datetime.fromisoformat(changed["updatedAt"]) > datetime.fromisoformat(
        created["updatedAt"]
    )
    assert await get(client, created["id"]) == changed


async def test_patch_the_time_zone_alone_keeps_the_expression(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    response = await client.patch(
        f"/schedules/{created['id']}", json={"timezone": "America/New_York"}
    )
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["cron"], changed["timezone"]) == ("0 9 * * *", "America/New_York")
    for run in times(changed):
        assert run.hour in (13, 14), run  # 09:00 EDT or EST
        assert (run.astimezone(NEW_YORK).hour, run.astimezone(NEW_YORK).minute) == (9, 0), run
    assert times(changed)[0] == next_run(changed)


async def test_patch_name_missed_and_job_keep_the_due_times(client: Client) -> None:
    tenant = new_tenant()
    created = await create(client, schedule(tenant))
    path = f"/schedules/{created['id']}"
    renamed = await client.patch(path, json={"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
    assert [one["name"] for one in (await listed(client, tenant))["schedules"]] == ["renamed"]
    # Its own name again is no conflict.
    assert (await client.patch(path, json={"name": "renamed"})).status_code == 200
    missed = await client.patch(path, json={"missed": "once"})
    assert missed.status_code == 200, missed.text
    assert missed.json()["missed"] == "once"
    job = await client.patch(path, json={"job": {**EMAIL, "maxAttempts": 2}})
    assert job.status_code == 200, job.text
    assert job.json()["job"] == {**EMAIL, "maxAttempts": 2, "priority": None}
    final = await get(client, created["id"])
    assert (final["name"], final["missed"], final["job"]) == (
        "renamed",
        "once",
        {**EMAIL, "maxAttempts": 2, "priority": None},
    )
    assert (final["cron"], final["timezone"]) == (created["cron"], created["timezone"])
    assert (final["nextRunAt"], final["nextRuns"]) == (created["nextRunAt"], created["nextRuns"])


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),
        ({"timezone": "Nowhere/Else"}, "timezone"),
        ({"cron": "0 10 * * *", "timezone": "Nowhere/Else"}, "timezone"),
        ({"missed": "sometimes"}, "missed"),
        ({"name": " leading space"}, "name"),
        ({"colour": "red"}, "colour"),
        ({"tenantId": "someone-else"}, "tenantId"),
        ({"job": {"type": "teleport", "payload": {}}}, "job.type"),
        ({"job": {"type": "sleep", "payload": {"delayMs": -1}}}, "job.payload.delayMs"),
        ({"job": {"type": "sleep", "payload": {"to": "a@example.test", "subject": "s"}}}, "job.payload.to"),
        ({"job": {"type": "email", "payload": {"to": "nobody", "subject": "s"}}}, "job.payload.to"),
        ({"job": {**SLEEP, "maxAttempts": 99}}, "job.maxAttempts"),
    ],
)  # fmt: skip
async def test_invalid_patches_are_400_naming_the_field_and_change_nothing(
    client: Client, body: dict[str, Any], key: str
) -> None:
    created = await create(client, schedule(new_tenant()))
    refused(await client.patch(f"/schedules/{created['id']}", json=body), key)
    assert await get(client, created["id"]) == created


async def test_patch_with_nothing_to_change_is_400(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    for body in ({}, {"name": None, "cron": None}):
        response = await client.patch(f"/schedules/{created['id']}", json=body)
        assert response.status_code == 400, response.text
        assert "nothing to change" in response.json()["detail"]
    assert await get(client, created["id"]) == created


async def test_patch_a_job_with_a_nul_character_is_400(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    job = {"type": "email", "payload": {"to": "a@example.test", "subject": "a\x00"}}
    response = await client.patch(f"/schedules/{created['id']}", json={"job": job})
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["detail"]
    assert await get(client, created["id"]) == created


async def test_patch_to_a_name_taken_is_409_and_changes_nothing(client: Client) -> None:
    tenant = new_tenant()
    await create(client, schedule(tenant, "taken"))
    created = await create(client, schedule(tenant, "mine"))
    response = await client.patch(
        f"/schedules/{created['id']}", json={"name": "taken", "missed": "once"}
    )
    assert response.status_code == 409, (
        f"renaming to a taken name answered {response.status_code}: {response.text}"
    )
    assert response.json()["extra"] == {"key": "name", "source": "body"}
    assert await get(client, created["id"]) == created


async def test_patch_unknown_schedule_is_404(client: Client) -> None:
    response = await client.patch(f"/schedules/{uuid.uuid4()}", json={"name": "x"})
    assert response.status_code == 404


# -- pause and resume -----------------------------------------------------------------


async def test_pause_and_resume(client: Client) -> None:
    tenant = new_tenant()
    created = await create(client, schedule(tenant, cron="*/10 * * * * *"))
    path = f"/schedules/{created['id']}"
    response = await client.post(f"{path}/pause")
    assert response.status_code == 200, response.text
    paused = response.json()
    assert (paused["paused"], paused["nextRunAt"], paused["nextRuns"]) == (True, None, [])
    assert datetime.fromisoformat(paused["updatedAt"]) > datetime.fromisoformat(
        created["updatedAt"]
    )
    assert (paused["cron"], paused["job"]) == (created["cron"], created["job"])
    # Twice is fine, and changes nothing.
    again = await client.post(f"{path}/pause")
    assert again.status_code == 200, again.text
    assert again.json() == paused
    assert await get(client, created["id"]) == paused
    assert (await listed(client, tenant))["schedules"] == [paused]

    before = datetime.now(UTC)
    response = await client.post(f"{path}/resume")
    assert response.status_code == 200, response.text
    resumed = response.json()
    assert resumed["paused"] is False
    assert next_run(resumed) > before
    runs = times(resumed)
    assert len(runs) == 5 and runs[0] == next_run(resumed)
    assert gaps(runs) == [timedelta(seconds=10)] * 4
    # Resuming an active schedule changes nothing.
    again = await client.post(f"{path}/resume")
    assert again.status_code == 200, again.text
    assert again.json() == resumed


async def test_a_paused_schedule_keeps_its_changes_paused(client: Client) -> None:
    created = await create(client, schedule(new_tenant()))
    path = f"/schedules/{created['id']}"
    assert (await client.post(f"{path}/pause")).status_code == 200
    response = await client.patch(path, json={"cron": "15 6 * * *"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["paused"], changed["nextRunAt"], changed["nextRuns"]) == (True, None, [])
    resumed = (await client.post(f"{path}/resume")).json()
    assert [(run.hour, run.minute) for run in times(resumed)] == [(6, 15)] * 5


@pytest.mark.parametrize("action", ["pause", "resume"])
async def test_pause_or_resume_unknown_schedule_is_404(client: Client, action: str) -> None:
    assert (await client.post(f"/schedules/{uuid.uuid4()}/{action}")).status_code == 404


# -- delete ---------------------------------------------------------------------------


async def test_delete(client: Client) -> None:
    tenant = new_tenant()
    created = await create(client, schedule(tenant))
    kept = await create(client, schedule(tenant, "kept"))
    path = f"/schedules/{created['id']}"
    response = await client.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(path)).status_code == 404
    assert (await client.delete(path)).status_code == 404
    assert (await client.patch(path, json={"name": "back"})).status_code == 404
    assert (await client.post(f"{path}/resume")).status_code == 404
    assert (await listed(client, tenant))["schedules"] == [kept]
    # Its name is free again.
    assert (await create(client, schedule(tenant)))["id"] != created["id"]


async def test_a_schedule_whose_zone_this_host_lacks_is_still_shown(
    client: Client, engine: AsyncEngine
) -> None:
    tenant = new_tenant()
    created = (await client.post("/schedules", json=schedule(tenant))).json()
    async with engine.begin() as conn:  # as if stored by a host whose zone database had it
        await conn.execute(
            update(Schedule)
            .where(Schedule.id == uuid.UUID(created["id"]))
            .values(timezone="Nowhere/Else")
        )
    shown = await get(client, created["id"])
    assert (shown["timezone"], shown["nextRuns"]) == ("Nowhere/Else", [shown["nextRunAt"]])
    assert (await listed(client, tenant))["total"] == 1


async def test_a_schedule_deleted_while_it_is_changed_is_a_404(engine: AsyncEngine) -> None:
    tenant = new_tenant()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        store = ScheduleStore(session)
        row = Schedule(
            tenant_id=tenant, name="doomed", cron="0 9 * * *", timezone="UTC", missed="skip",
            job_type="sleep", payload={"delayMs": 0}, paused=False, next_run_at=datetime.now(UTC),
        )  # fmt: skip
        await store.save(row)
        await session.commit()
        async with engine.begin() as conn:  # another request deletes it meanwhile
            await conn.execute(delete(Schedule).where(Schedule.id == row.id))
        row.paused = True
        with pytest.raises(NotFound):
            await store.save(row)
