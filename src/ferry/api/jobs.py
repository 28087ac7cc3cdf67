"""The `/jobs` routes.

Rows are committed before their events are published and their messages are
sent (a worker must never see a message for a row it cannot read), and a
failed send still answers 201: the row is the job, and the recovery pass
re-sends what no queue holds.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from ferry.api.answers import BODY, TENANT_CHECKED, KeyConflict, StatusConflict
from ferry.api.auth import Principal
from ferry.api.bodies import error_of
from ferry.db import outbox
from ferry.db.idempotency import claim, remember, request_hash
from ferry.db.jobs import Enqueued, JobStore, NewRow, NotFound, insert_jobs
from ferry.db.models import Job, JobStatus, new_mark, utcnow
from ferry.events.event import JobEvent
from ferry.fields import TENANT_ID_PATTERN
from ferry.jobs.payloads import PAYLOAD_TYPES
from ferry.observability.metrics import recorder
from ferry.queue.fair.broker import FairRedisBroker
from ferry.queue.sender import announce, pending_events
from ferry.service.schemas import (
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    BulkRetry,
    CreatedJob,
    CreatedJobs,
    JobOut,
    JobPage,
    JobPatch,
    JobStats,
    JobTypeName,
    NewJob,
    NewJobBatch,
    Requeued,
    job_type_of,
)

log = logging.getLogger(__name__)

TenantQuery = Annotated[
    str | None,
    QueryParameter(name="tenantId", min_length=1, max_length=100, pattern=TENANT_ID_PATTERN),
]
DbSession = NamedDependency[AsyncSession]
Caller = NamedDependency[Principal]  # who the request acts as (ferry.api.auth)
IdempotencyKeyHeader = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=200)
]
JobId = FromPath[uuid.UUID]


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        tenant_id=job.tenant_id,
        type=job.type,
        payload=job.payload,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=job.error,
        result=job.result,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        next_run_at=job.next_run_at,
    )


def storable(payload: Any) -> Any:
    """PostgreSQL's JSON cannot hold the NUL character: refuse it as bad input (400)
    rather than fail the INSERT (500)."""
    if _holds_nul(payload):
        raise ValidationException("payload: text may not contain the NUL character (\\u0000)")
    return payload


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _row(spec: NewJob, default_max_attempts: int) -> NewRow:
    return NewRow(
        tenant_id=spec.tenant_id,
        type=job_type_of(spec),
        payload=storable(msgspec.to_builtins(spec.payload)),
        max_attempts=spec.max_attempts or default_max_attempts,
        delay_ms=spec.delay_ms,
    )


async def _queue_of(broker: Any, tenant_id: str | None) -> tuple[int | None, int | None]:
    """Jobs waiting for their turn and the oldest one's wait: of a tenant, or of all."""
    if not isinstance(broker, FairRedisBroker):
        return None, None
    queues = await anyio.to_thread.run_sync(broker.fair.peek, [tenant_id] if tenant_id else [])
    return sum(q.waiting for q in queues), max((q.wait_ms for q in queues), default=0)


def _events(
    tenant_id: str, status: JobStatus, job_ids: list[uuid.UUID], at: datetime
) -> list[JobEvent]:
    return [JobEvent(tenant_id, job_id, status, 0, None, at) for job_id in job_ids]


async def _commit_and_announce(
    session: AsyncSession,
    state: State,
    events: list[JobEvent],
    jobs: Sequence[Enqueued] = (),
    mark: uuid.UUID | None = None,
) -> None:
    """Commit, with the outbox row of the events' jobs (`ferry.db.outbox`; `mark`: written
    already), then publish the events and send the jobs. The events' `at` is the
    `updated_at` their jobs got."""
    if mark is None and events:
        mark = await outbox.add(session, (event.job_id for event in events), events[0].at)
    await session.commit()
    await announce(state.events, state.dispatcher, events, jobs, mark)


async def _create_jobs(
    state: State,
    specs: Sequence[NewJob],
    request: NewJob | NewJobBatch,
    idempotency_key: str | None,
) -> tuple[list[uuid.UUID], bool]:
    """Create `specs`, announce and send them: (their ids, True). With an
    Idempotency-Key already used for this request: (the first request's ids, False).
    A key belongs to the tenant of the first job."""
    rows = [_row(spec, state.settings.default_max_attempts) for spec in specs]
    if idempotency_key is None:
        # Shares a transaction with the creates that arrive with it (ferry.service.intake).
        jobs = await state.intake.create(rows)
    else:
        async with _session(state) as session:
            tenant = specs[0].tenant_id
            digest = request_hash(msgspec.json.encode(request))
            if earlier := await claim(session, tenant, idempotency_key, digest):
                return earlier.job_ids, False
            mark = new_mark()
            jobs = await insert_jobs(session, rows, mark)
            await remember(session, tenant, idempotency_key, [job.id for job in jobs])
            await _commit_and_announce(session, state, pending_events(jobs), jobs, mark)
    for job in jobs:
        recorder.inc("ferry_jobs_created", job.tenant_id, job.type)
    return [job.id for job in jobs], True


def _session(state: State) -> AsyncSession:
    """A session of the route's own: the create routes take none from the plugin, whose
    per-request session (and commit) most creates, written by the intake, do not need."""
    return AsyncSession(state.engine, expire_on_commit=False)


async def _owned(store: JobStore, caller: Principal, job_id: uuid.UUID) -> None:
    """A tenant key sees its own tenant's jobs only: another's is 404, not 403, so
    that a key cannot learn which job ids exist."""
    if caller.tenant_id is not None and (await store.get(job_id)).tenant_id != caller.tenant_id:
        raise NotFound(job_id)


async def _created_before(store: JobStore, job_id: uuid.UUID) -> Response[CreatedJob]:
    """The answer to a repeated request: the job the first one created, as it is now."""
    try:
        status = (await store.get(job_id)).status
    except NotFound:
        status = "DELETED"
    return Response(
        CreatedJob(job_id=job_id, status=status),
        status_code=200,
        headers={"Location": f"/jobs/{job_id}"},
    )


class JobController(Controller):
    path = "/jobs"
    tags = ["jobs"]  # noqa: RUF012  (Controller declares it as an instance attribute)

    @post("/", summary="Create a job", raises=[*BODY, KeyConflict, *TENANT_CHECKED])
    async def create(
        self,
        data: JSONBody[NewJob],
        state: State,
        principal: Caller,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[CreatedJob]:
        principal.check(data.tenant_id)
        [job_id], created = await _create_jobs(state, [data], data, idempotency_key)
        if not created:
            async with _session(state) as session:
                return await _created_before(JobStore(session), job_id)
        return Response(
            CreatedJob(job_id=job_id, status=JobStatus.PENDING),
            status_code=201,
            headers={"Location": f"/jobs/{job_id}"},
        )

    @post(
        "/batch",
        summary="Create up to 1000 jobs in one request",
        raises=[*BODY, KeyConflict, *TENANT_CHECKED],
    )
    async def create_batch(
        self,
        data: JSONBody[NewJobBatch],
        state: State,
        principal: Caller,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[CreatedJobs]:
        for spec in data.jobs:
            principal.check(spec.tenant_id)
        job_ids, created = await _create_jobs(state, data.jobs, data, idempotency_key)
        return Response(CreatedJobs(job_ids=job_ids), status_code=201 if created else 200)

    @get("/", summary="List jobs, newest first", raises=TENANT_CHECKED)
    async def list_jobs(
        self,
        db_session: DbSession,
        principal: Caller,
        tenant_id: TenantQuery = None,
        status: Annotated[JobStatus | None, QueryParameter()] = None,
        job_type: Annotated[JobTypeName | None, QueryParameter(name="type")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIST_LIMIT)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_LIST_OFFSET)] = 0,
    ) -> JobPage:
        jobs, total = await JobStore(db_session).page(
            tenant_id=principal.scope(tenant_id),
            status=status,
            job_type=job_type,
            limit=limit,
            offset=offset,
        )
        return JobPage(jobs=[job_out(job) for job in jobs], total=total, limit=limit, offset=offset)

    @get("/stats", summary="Job counts per status", raises=TENANT_CHECKED)
    async def stats(
        self, db_session: DbSession, state: State, principal: Caller, tenant_id: TenantQuery = None
    ) -> JobStats:
        tenant_id = principal.scope(tenant_id)
        counts = await JobStore(db_session).counts(tenant_id)
        waiting, oldest_wait_ms = await _queue_of(state.dispatcher.broker, tenant_id)
        return JobStats(
            tenant_id=tenant_id,
            total=sum(counts.values()),
            **{status.lower(): counts.get(status, 0) for status in JobStatus},
            waiting=waiting,
            oldest_wait_ms=oldest_wait_ms,
        )

    @get("/{job_id:uuid}", summary="One job", raises=[NotFoundException])
    async def get_job(self, job_id: JobId, db_session: DbSession, principal: Caller) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        return job_out(await store.get(job_id))

    @post(
        "/{job_id:uuid}/retry",
        status_code=200,
        summary="Replay a FAILED or CANCELLED job",
        raises=[NotFoundException, StatusConflict],
    )
    async def retry(
        self, job_id: JobId, db_session: DbSession, state: State, principal: Caller
    ) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        now = utcnow()
        job = await store.retry(job_id, now)
        events = _events(job.tenant_id, JobStatus.PENDING, [job.id], now)
        await _commit_and_announce(
            db_session, state, events, [Enqueued(job.id, job.type, job.tenant_id, 0)]
        )
        return job_out(job)

    @post(
        "/retry",
        status_code=200,
        summary="Replay dead letters in bulk",
        raises=[*BODY, *TENANT_CHECKED],
    )
    async def retry_many(
        self, data: JSONBody[BulkRetry], db_session: DbSession, state: State, principal: Caller
    ) -> Requeued:
        principal.check(data.tenant_id)
        jobs = await JobStore(db_session).retry_many(
            data.tenant_id,
            ids=data.ids,
            job_type=data.type,
            failed_since=data.failed_since,
            limit=data.limit,
            now=(now := utcnow()),
        )
        events = _events(data.tenant_id, JobStatus.PENDING, [job.id for job in jobs], now)
        await _commit_and_announce(db_session, state, events, jobs)
        return Requeued(requeued=len(jobs), job_ids=[job.id for job in jobs])

    @post(
        "/{job_id:uuid}/cancel",
        status_code=200,
        summary="Cancel a PENDING or RUNNING job",
        raises=[NotFoundException, StatusConflict],
    )
    async def cancel(
        self, job_id: JobId, db_session: DbSession, state: State, principal: Caller
    ) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        now = utcnow()
        job = await store.cancel(job_id, now)
        event = JobEvent(job.tenant_id, job.id, job.status, job.attempts, job.error, now)
        await _commit_and_announce(db_session, state, [event])
        recorder.inc("ferry_jobs_finished", job.tenant_id, job.type, JobStatus.CANCELLED)
        return job_out(job)

    @patch(
        "/{job_id:uuid}",
        summary="Change the payload or maxAttempts of a PENDING job",
        raises=[*BODY, NotFoundException, StatusConflict],
    )
    async def update(
        self, job_id: JobId, data: JSONBody[JobPatch], db_session: DbSession, principal: Caller
    ) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        changes: dict[str, Any] = {}
        if data.max_attempts is not None:
            changes["max_attempts"] = data.max_attempts
        if data.payload is not None:
            job_type = (await store.get(job_id)).type
            changes["payload"] = _validated_payload(job_type, data.payload)
            # Guard against a concurrent type change: the payload was checked for this type.
            changes["type"] = job_type
        if not changes:
            raise ValidationException("nothing to change: send payload and/or maxAttempts")
        return job_out(await store.patch(job_id, **changes))

    @delete(
        "/{job_id:uuid}",
        summary="Delete a job that is not RUNNING",
        raises=[NotFoundException, StatusConflict],
    )
    async def remove(self, job_id: JobId, db_session: DbSession, principal: Caller) -> None:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        await store.delete(job_id)


def _validated_payload(job_type: str, payload: dict[str, Any]) -> Any:
    try:
        typed = msgspec.convert(payload, PAYLOAD_TYPES[job_type])
    except msgspec.ValidationError as exc:
        article = "an" if job_type[0] in "aeiou" else "a"
        raise ValidationException(
            f"invalid payload for {article} {job_type} job", extra=[error_of(exc, "payload")]
        ) from exc
    return storable(msgspec.to_builtins(typed))
