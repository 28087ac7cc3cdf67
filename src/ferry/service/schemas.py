"""Wire formats: what clients send and what Ferry answers, camelCase on the wire.

A job's `type` tags its request, so msgspec validates each payload against the
struct of its type (`ferry.jobs.payloads`) in one decode and names the offending
field on error. A job's own retry policy is checked in the same decode, within the
bounds of a type's (`ferry.jobs.registry`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
from msgspec import Meta

from ferry.cron import Cron, CronError, Missed, time_zone
from ferry.db.models import utcnow
from ferry.fields import TenantId, field_error, pattern
from ferry.jobs.registry import (
    MAX_ATTEMPTS_LIMIT,
    MAX_BACKOFF_MS,
    JobType,
    backoff_conflict,
    backoff_ms,
)
from ferry.settings import Settings

MAX_CREATE_DELAY_MS = 7 * 24 * 3600 * 1000
MAX_BATCH = 1000
MAX_LIST_LIMIT = 500
# Deep offsets are slow (the database walks past them) and past this are no use.
MAX_LIST_OFFSET = 10_000_000
# Event seqs (Last-Event-ID): a signed 64-bit integer, what Redis and PostgreSQL hold.
MAX_SEQ = 2**63 - 1

MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)]
Priority = Annotated[int, Meta(ge=0, le=9, description="0 (lowest) to 9; default 5")]
DelayMs = Annotated[int, Meta(ge=0, le=MAX_CREATE_DELAY_MS)]
RetryMs = Annotated[int, Meta(ge=0, le=MAX_BACKOFF_MS)]


class _NewJob(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="type"
):
    tenant_id: TenantId
    max_attempts: MaxAttempts | None = None
    delay_ms: DelayMs = 0
    # When to run it, instead of a delay (with its offset: a time without one names no instant).
    run_at: Annotated[datetime, Meta(tz=True)] | None = None
    priority: Priority | None = None  # None: the default, 5
    # The job's own backoff, either half or both; what it leaves out is its type's.
    retry_base_ms: RetryMs | None = None
    retry_cap_ms: RetryMs | None = None

    # Its type's backoff (base, cap), set on each type's struct by `request_types`, and
    # how far ahead `runAt` may be (RUN_AT_HORIZON_MS).
    _type_backoff: ClassVar[tuple[int, int]] = (0, MAX_BACKOFF_MS)
    _run_at_horizon_ms: ClassVar[int] = Settings().run_at_horizon_ms

    def __post_init__(self) -> None:
        if self.run_at is not None:
            if self.delay_ms:
                raise field_error("runAt", "give runAt or delayMs, not both")
            if (self.run_at - utcnow()).total_seconds() * 1000 > self._run_at_horizon_ms:
                horizon = _span(self._run_at_horizon_ms)
                raise field_error("runAt", f"is more than {horizon} ahead (RUN_AT_HORIZON_MS)")
        if self.retry_base_ms is not None or self.retry_cap_ms is not None:
            problem = backoff_problem(self.retry_base_ms, self.retry_cap_ms, self._type_backoff)
            if problem is not None:
                raise field_error(*problem)


class _ScheduledJob(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="type"
):
    """The job a schedule creates at each due time (its `payload` is its type's)."""

    max_attempts: MaxAttempts | None = None
    priority: Priority | None = None


SCHEDULE_NAME_WORDS = (
    "1 to 100 letters, digits, spaces and . _ : - (starting with a letter or digit)"
)
SCHEDULE_NAME_PATTERN = pattern(
    r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$(?!\n)", f"a schedule name: {SCHEDULE_NAME_WORDS}"
)
ScheduleName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=SCHEDULE_NAME_PATTERN,
        description=SCHEDULE_NAME_WORDS,
    ),
]
CronExpression = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        description="5 fields (minute hour day-of-month month day-of-week), or 6 with "
        "seconds first, as Debian's cron reads them",
        examples=["0 9 * * 1-5", "*/10 * * * * *"],
    ),
]
TimeZoneName = Annotated[
    str, Meta(min_length=1, max_length=64, description="an IANA time zone", examples=["UTC"])
]


def cron_problem(cron: str | None, zone: str | None) -> tuple[str, str] | None:
    """(field, why) when the expression or the time zone names no schedule."""
    try:
        if zone is not None:
            time_zone(zone)
    except CronError as exc:
        return "timezone", str(exc)
    try:
        if cron is not None:
            Cron.parse(cron, zone or "UTC")
    except CronError as exc:
        return "cron", str(exc)
    return None


class _NewSchedule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    tenant_id: TenantId
    name: ScheduleName
    cron: CronExpression
    timezone: TimeZoneName = "UTC"
    missed: Missed = Missed.SKIP

    def __post_init__(self) -> None:
        if problem := cron_problem(self.cron, self.timezone):
            raise field_error(*problem)


class _SchedulePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Changes to a schedule: what it leaves out stays as it is."""

    name: ScheduleName | None = None
    cron: CronExpression | None = None
    timezone: TimeZoneName | None = None
    missed: Missed | None = None

    def __post_init__(self) -> None:
        # A time zone alone is checked here; with the schedule's own cron, by the route.
        if problem := cron_problem(self.cron, self.timezone):
            raise field_error(*problem)


def _span(ms: int) -> str:
    days, rest = divmod(ms, 86_400_000)
    return f"{days:,} days" if days and not rest else f"{ms:,} ms"


def due_of(job: Any) -> tuple[int, datetime | None]:
    """When a create request's job is due: (how long it is held back in ms, its `runAt`
    if that is ahead). A `runAt` past is now."""
    if job.run_at is None:
        return int(job.delay_ms), None
    ahead_ms = int((job.run_at - utcnow()).total_seconds() * 1000)
    return (ahead_ms, job.run_at) if ahead_ms > 0 else (0, None)


def job_type_of(job: Any) -> str:
    """The `type` a create request named (the tag of its struct)."""
    return type(job).__struct_config__.tag  # type: ignore[no-any-return]


class JobPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Changes to a PENDING job; `payload` is validated against the job's type."""

    payload: dict[str, Any] | None = None
    max_attempts: MaxAttempts | None = None
    # The job's own backoff; what it leaves out stays as it is (`backoff_problem`).
    retry_base_ms: RetryMs | None = None
    retry_cap_ms: RetryMs | None = None

    def backoff_problem(
        self, job_type: str, own: tuple[int | None, int | None], settings: Settings
    ) -> tuple[str, str] | None:
        """(field, why) when the changed backoff of a job of `job_type` whose own is `own`
        (base, cap; None: its type's) would have its cap below its base."""
        kept = backoff_ms(job_type, settings, own)
        return backoff_problem(self.retry_base_ms, self.retry_cap_ms, kept, "the job's")


def backoff_problem(
    base_ms: int | None,
    cap_ms: int | None,
    inherited: tuple[int, int],
    inherited_from: str = "the job type's",
) -> tuple[str, str] | None:
    """(field, why) when a job's own backoff, with the half it leaves out `inherited` (its
    type's base and cap, `backoff_ms`), would have its cap below its base."""
    at_fault = backoff_conflict(base_ms, cap_ms, inherited)
    if at_fault == "cap" and base_ms is not None:
        return "retryCapMs", f"is less than retryBaseMs ({base_ms:,} ms)"
    if at_fault == "cap":
        return "retryCapMs", f"is less than {inherited_from} retry base, {inherited[0]:,} ms"
    if at_fault == "base":
        return "retryBaseMs", (
            f"is more than {inherited_from} retry cap, {inherited[1]:,} ms: give retryCapMs too"
        )
    return None


def request_types(
    job_types: Mapping[str, JobType], settings: Settings | None = None
) -> dict[str, Any]:
    """The request types that depend on the registered job types, by the names the
    routes use: `NewJob` (one struct per type, tagged by `type`, so that msgspec checks
    each payload against its type's struct in one decode and names the field),
    `NewJobBatch`, `JobTypeName`, and the schedules' `NewSchedule` and `SchedulePatch`
    (whose `job` is tagged the same way). `settings`: the deployment's, whose backoff a
    type without its own has (by default, the settings' defaults)."""
    settings = settings or Settings()
    new_job: Any = _by_type(
        job_types,
        "New{}Job",
        _NewJob,
        lambda name: {
            "_type_backoff": backoff_ms(name, settings),
            "_run_at_horizon_ms": settings.run_at_horizon_ms,
        },
    )
    batch = msgspec.defstruct(
        "NewJobBatch",
        [("jobs", Annotated[list[new_job], Meta(min_length=1, max_length=MAX_BATCH)])],
        kw_only=True,
        forbid_unknown_fields=True,
        module=__name__,
    )
    scheduled: Any = _by_type(job_types, "Scheduled{}Job", _ScheduledJob, lambda name: {})
    new_schedule = msgspec.defstruct(
        "NewSchedule", [("job", scheduled)], bases=(_NewSchedule,), module=__name__
    )
    schedule_patch = msgspec.defstruct(
        "SchedulePatch", [("job", scheduled | None, None)], bases=(_SchedulePatch,), module=__name__
    )
    return {
        "NewJob": new_job,
        "NewJobBatch": batch,
        "JobTypeName": Literal[tuple(job_types)],
        "NewSchedule": new_schedule,
        "SchedulePatch": schedule_patch,
    }


def _by_type(
    job_types: Mapping[str, JobType],
    struct_name: str,
    base: type[msgspec.Struct],
    namespace: Callable[[str], dict[str, Any]],
) -> Any:
    """A union of one struct per job type, each `base` with its type's payload, tagged by
    the type's name (`struct_name` formats the camel-cased name)."""
    return Union[  # noqa: UP007  (built at run time)
        tuple(
            msgspec.defstruct(
                struct_name.format(_camel(name)),
                [("payload", job_type.payload_type)],
                bases=(base,),
                tag=name,
                module=__name__,
                namespace=namespace(name),
            )
            for name, job_type in job_types.items()
        )
    ]


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_.:-]", name))


class BulkRetry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Replay dead letters: the given FAILED/CANCELLED jobs, or FAILED jobs matching a filter."""

    tenant_id: TenantId
    ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=MAX_BATCH)] | None = None
    type: Annotated[str, Meta(max_length=32)] | None = None  # a job type's name
    # With its offset: a time without one names no instant.
    failed_since: Annotated[datetime, Meta(tz=True)] | None = None
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 1000


class Requeued(msgspec.Struct, rename="camel"):
    requeued: int
    job_ids: list[uuid.UUID]


class CreatedJob(msgspec.Struct, rename="camel"):
    job_id: uuid.UUID
    status: str


class CreatedJobs(msgspec.Struct, rename="camel"):
    job_ids: list[uuid.UUID]


class JobOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    tenant_id: str
    type: str
    payload: Any
    status: str
    attempts: int
    max_attempts: int
    error: str | None
    result: Any
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime | None
    # What the running (or last) attempt reported through `ctx.progress`.
    progress: float | None = None
    progress_message: str | None = None
    # The job's own backoff, when it was created with one (else its type's).
    retry_base_ms: int | None = None
    retry_cap_ms: int | None = None
    # A job a schedule fired: the schedule, and the due time it fired for.
    schedule_id: uuid.UUID | None = None
    scheduled_for: datetime | None = None
    priority: int = 5


class JobPage(msgspec.Struct):
    jobs: list[JobOut]
    total: int
    limit: int
    offset: int


class JobStats(msgspec.Struct, rename="camel"):
    tenant_id: str | None
    total: int
    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    # Fair scheduling: jobs waiting in the tenant's queue for their turn, and how
    # long the oldest of them has waited (null when fair scheduling is off).
    waiting: int | None = None
    oldest_wait_ms: int | None = None
    # Paused (POST /tenants/{id}/pause): the whole tenant, and job types of it.
    paused: bool = False
    paused_types: list[str] = []


class TenantPauses(msgspec.Struct, rename="camel"):
    tenant_id: str
    paused: bool  # the whole tenant
    paused_types: list[str]  # job types paused on their own
    # Resume: the held jobs sent again now (more, if any, by the recovery pass).
    resent: int = 0


class ScheduledJobOut(msgspec.Struct, rename="camel"):
    type: str
    payload: Any
    max_attempts: int | None
    priority: int | None


class ScheduleOut(msgspec.Struct, rename="camel"):
    id: uuid.UUID
    tenant_id: str
    name: str
    cron: str
    timezone: str
    missed: str
    job: ScheduledJobOut
    paused: bool
    description: str | None  # the expression in words
    # The next due time (null while paused), and the next few.
    next_run_at: datetime | None
    next_runs: list[datetime]
    # The due time it last fired for, and the job it created.
    last_run_at: datetime | None
    last_job_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class SchedulePage(msgspec.Struct):
    schedules: list[ScheduleOut]
    total: int
    limit: int
    offset: int


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    # Which process answered (host:pid): behind a load balancer, tells replicas apart.
    instance: str = ""
    checks: dict[str, str] = {}
