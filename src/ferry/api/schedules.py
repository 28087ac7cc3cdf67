"""The `/schedules` routes: cron schedules that create a job at each due time.

The workers fire them (`ferry.worker.scheduler`); here they are created,
read, changed, paused and resumed. A change of the expression or its time zone,
and a resume, start from now: due times that passed meanwhile are not made up.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, JSONBody, QueryParameter

from ferry.api.answers import BODY, TENANT_CHECKED, NameConflict
from ferry.api.dependencies import Caller, DbSession
from ferry.api.jobs import TenantQuery, refuse_nul
from ferry.cron import Cron
from ferry.db.models import Schedule, utcnow
from ferry.db.schedules import ScheduleStore
from ferry.service.schemas import (
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    ScheduledJobOut,
    ScheduleOut,
    SchedulePage,
    cron_problem,
    job_type_of,
)

NEXT_RUNS = 5  # due times each schedule shows

if TYPE_CHECKING:
    # Built from the registered job types (service.schemas.request_types), as /jobs's.
    NewSchedule = Any
    SchedulePatch = Any

ScheduleId = FromPath[uuid.UUID]


def schedule_out(schedule: Schedule) -> ScheduleOut:
    upcoming = [] if schedule.paused else [schedule.next_run_at]
    try:  # as stored (checked when it was): only a zone this host lacks can fail here
        cron: Cron | None = Cron(schedule.cron, ZoneInfo(schedule.timezone))
    except (ZoneInfoNotFoundError, ValueError):
        cron = None
    if upcoming and cron is not None:
        upcoming += cron.upcoming(schedule.next_run_at, NEXT_RUNS - 1)
    return ScheduleOut(
        id=schedule.id,
        tenant_id=schedule.tenant_id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        missed=schedule.missed,
        job=ScheduledJobOut(
            schedule.job_type, schedule.payload, schedule.max_attempts, schedule.priority
        ),
        paused=schedule.paused,
        description=None if cron is None else cron.describe(),
        next_run_at=None if schedule.paused else schedule.next_run_at,
        next_runs=upcoming,
        last_run_at=schedule.last_run_at,
        last_job_id=schedule.last_job_id,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
    )


def _next_after_now(schedule: Schedule, cron: Cron) -> datetime:
    """The due time a changed or resumed schedule waits for: the next after now, and
    after the one it last fired for (whatever this host's clock says)."""
    return cron.after(max(utcnow(), schedule.last_run_at or utcnow()))


def _set_job(schedule: Schedule, job: Any) -> None:
    schedule.job_type = job_type_of(job)
    schedule.payload = refuse_nul(msgspec.to_builtins(job.payload))
    schedule.max_attempts = job.max_attempts
    schedule.priority = job.priority


class ScheduleController(Controller):
    path = "/schedules"
    tags = ["schedules"]  # noqa: RUF012

    @post("/", summary="Create a schedule", raises=[*BODY, NameConflict, *TENANT_CHECKED])
    async def create(
        self, data: JSONBody[NewSchedule], db_session: DbSession, principal: Caller
    ) -> Response[ScheduleOut]:
        principal.check(data.tenant_id)
        now = utcnow()
        cron = Cron.parse(data.cron, data.timezone)
        schedule = Schedule(
            tenant_id=data.tenant_id,
            name=data.name,
            cron=cron.expression,
            timezone=data.timezone,
            missed=data.missed,
            paused=False,
            next_run_at=cron.after(now),
            created_at=now,
            updated_at=now,
        )
        _set_job(schedule, data.job)
        await ScheduleStore(db_session).save(schedule)
        location = {"Location": f"/schedules/{schedule.id}"}
        return Response(schedule_out(schedule), status_code=201, headers=location)

    @get("/", summary="List schedules, by name", raises=TENANT_CHECKED)
    async def list_schedules(
        self,
        db_session: DbSession,
        principal: Caller,
        tenant_id: TenantQuery = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIST_LIMIT)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_LIST_OFFSET)] = 0,
    ) -> SchedulePage:
        schedules, total = await ScheduleStore(db_session).page(
            tenant_id=principal.scope(tenant_id), limit=limit, offset=offset
        )
        return SchedulePage(
            schedules=[schedule_out(one) for one in schedules],
            total=total,
            limit=limit,
            offset=offset,
        )

    @get(
        "/{schedule_id:uuid}",
        summary="One schedule, with its next due times",
        raises=[NotFoundException],
    )
    async def get_schedule(
        self, schedule_id: ScheduleId, db_session: DbSession, principal: Caller
    ) -> ScheduleOut:
        return schedule_out(await ScheduleStore(db_session).get(schedule_id, principal.tenant_id))

    @patch(
        "/{schedule_id:uuid}",
        summary="Change a schedule: its name, expression, time zone, policy or job",
        raises=[*BODY, NotFoundException, NameConflict],
    )
    async def update(
        self,
        schedule_id: ScheduleId,
        data: JSONBody[SchedulePatch],
        db_session: DbSession,
        principal: Caller,
    ) -> ScheduleOut:
        store = ScheduleStore(db_session)
        schedule = await store.get(schedule_id, principal.tenant_id)
        changes = msgspec.structs.asdict(data)
        if all(value is None for value in changes.values()):
            raise ValidationException("nothing to change: send name, cron, timezone, missed or job")
        if data.cron is not None or data.timezone is not None:
            cron, zone = data.cron or schedule.cron, data.timezone or schedule.timezone
            if problem := cron_problem(cron, zone):
                field, why = problem
                raise ValidationException(
                    f"Validation failed for PATCH /schedules/{schedule_id}",
                    extra=[{"message": why, "key": field, "source": "body"}],
                )
            parsed = Cron.parse(cron, zone)
            schedule.cron, schedule.timezone = parsed.expression, zone
            schedule.next_run_at = _next_after_now(schedule, parsed)
        if data.name is not None:
            schedule.name = data.name
        if data.missed is not None:
            schedule.missed = data.missed
        if data.job is not None:
            _set_job(schedule, data.job)
        schedule.updated_at = utcnow()
        return schedule_out(await store.save(schedule))

    @delete("/{schedule_id:uuid}", summary="Delete a schedule", raises=[NotFoundException])
    async def remove(
        self, schedule_id: ScheduleId, db_session: DbSession, principal: Caller
    ) -> None:
        store = ScheduleStore(db_session)
        await store.delete(await store.get(schedule_id, principal.tenant_id))

    @post(
        "/{schedule_id:uuid}/pause",
        status_code=200,
        summary="Pause a schedule: it fires nothing until resumed",
        raises=[NotFoundException],
    )
    async def pause(
        self, schedule_id: ScheduleId, db_session: DbSession, principal: Caller
    ) -> ScheduleOut:
        store = ScheduleStore(db_session)
        schedule = await store.get(schedule_id, principal.tenant_id)
        if not schedule.paused:
            schedule.paused, schedule.updated_at = True, utcnow()
        return schedule_out(await store.save(schedule))

    @post(
        "/{schedule_id:uuid}/resume",
        status_code=200,
        summary="Resume a paused schedule from its next due time after now",
        raises=[NotFoundException],
    )
    async def resume(
        self, schedule_id: ScheduleId, db_session: DbSession, principal: Caller
    ) -> ScheduleOut:
        store = ScheduleStore(db_session)
        schedule = await store.get(schedule_id, principal.tenant_id)
        if schedule.paused:
            now = utcnow()
            schedule.paused, schedule.updated_at = False, now
            schedule.next_run_at = _next_after_now(
                schedule, Cron.parse(schedule.cron, schedule.timezone)
            )
        return schedule_out(await store.save(schedule))
