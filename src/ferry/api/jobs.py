"""The `/jobs` routes.

Rows are committed before their events are published and their messages are
sent (a worker must never see a message for a row it cannot read), and a
failed send still answers 201: the row is the job, and the recovery pass
re-sends what no queue holds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.channels import ChannelsPlugin
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from ferry.api.answers import BODY, TENANT_CHECKED, KeyConflict, StatusConflict
from ferry.api.auth import Principal
from ferry.api.bodies import error_of
from ferry.api.dependencies import (
    AppRuntime,
    Caller,
    DbSession,
    Jobs,
    Runtime,
    Sends,
    runtime_of,
)
from ferry.db.idempotency import request_hash
from ferry.db.jobs import JobStore, NewRow, NotFound
from ferry.db.models import DEFAULT_PRIORITY, Job, JobStatus
from ferry.db.pauses import tenant_pauses
from ferry.events.channels import subscription
from ferry.events.event import RECONNECTED, channel_name, progress_after, says_lost, seq_of
from ferry.fields import TENANT_ID_PATTERN
from ferry.jobs.registry import REGISTRY
from ferry.service.jobs import IdempotencyKey, JobService
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
    Requeued,
    due_of,
    job_type_of,
)

log = logging.getLogger(__name__)
C = TypeVar("C", bound=Controller)
MAX_WAIT_S = 60  # of a long poll: proxies and clients time out after about that
ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

if TYPE_CHECKING:
    # Built from the registered job types when the app is made (service.schemas.request_types)
    # and given to Litestar as the handlers' signature namespace.
    NewJob = Any
    NewJobBatch = Any
    JobTypeName = str

TenantQuery = Annotated[
    str | None,
    QueryParameter(name="tenantId", min_length=1, max_length=100, pattern=TENANT_ID_PATTERN),
]
IdempotencyKeyHeader = Annotated[
    str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=200)
]
JobId = FromPath[uuid.UUID]


def job_out(job: Job) -> JobOut:
    return msgspec.convert(job, JobOut, from_attributes=True)


def refuse_nul(payload: Any) -> Any:
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


def _row(spec: NewJob, default_max_attempts: int, park_after_ms: int) -> NewRow:
    job_type = job_type_of(spec)
    delay_ms, run_at = due_of(spec)
    return NewRow(
        tenant_id=spec.tenant_id,
        type=job_type,
        payload=refuse_nul(msgspec.to_builtins(spec.payload)),
        max_attempts=spec.max_attempts or REGISTRY[job_type].max_attempts or default_max_attempts,
        delay_ms=delay_ms,
        retry_base_ms=spec.retry_base_ms,
        retry_cap_ms=spec.retry_cap_ms,
        parked=delay_ms > park_after_ms,
        run_at=run_at,
        priority=DEFAULT_PRIORITY if spec.priority is None else spec.priority,
    )


async def _create(
    jobs: JobService,
    specs: Sequence[NewJob],
    request: NewJob | NewJobBatch,
    idempotency_key: str | None,
) -> tuple[list[uuid.UUID], bool]:
    """A key belongs to the tenant of the first job."""
    rows = [_row(spec, jobs.default_max_attempts, jobs.park_after_ms) for spec in specs]
    key = None
    if idempotency_key is not None:
        digest = request_hash(msgspec.json.encode(request))
        key = IdempotencyKey(specs[0].tenant_id, idempotency_key, digest)
    return await jobs.create(rows, key)


async def _owned(store: JobStore, caller: Principal, job_id: uuid.UUID) -> None:
    """A tenant key sees its own tenant's jobs only: another's is 404, not 403, so
    that a key cannot learn which job ids exist."""
    if caller.tenant_id is not None and (await store.get(job_id)).tenant_id != caller.tenant_id:
        raise NotFound("job", job_id)


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
        jobs: Jobs,
        principal: Caller,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[CreatedJob]:
        principal.check(data.tenant_id)
        [job_id], created = await _create(jobs, [data], data, idempotency_key)
        if not created:
            async with jobs.session() as session:
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
        jobs: Jobs,
        principal: Caller,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[CreatedJobs]:
        for spec in data.jobs:
            principal.check(spec.tenant_id)
        job_ids, created = await _create(jobs, data.jobs, data, idempotency_key)
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
        self,
        db_session: DbSession,
        sender: Sends,
        principal: Caller,
        tenant_id: TenantQuery = None,
    ) -> JobStats:
        tenant_id = principal.scope(tenant_id)
        counts = await JobStore(db_session).counts(tenant_id)
        paused, paused_types = False, list[str]()
        if tenant_id is not None:
            paused, paused_types = await tenant_pauses(db_session, tenant_id)
        queues = await sender.waiting(tenant_id)  # None: fair scheduling is off
        waiting = None if queues is None else sum(q.waiting for q in queues)
        oldest_wait_ms = None if queues is None else max((q.wait_ms for q in queues), default=0)
        return JobStats(
            tenant_id=tenant_id,
            total=sum(counts.values()),
            **{status.lower(): counts.get(status, 0) for status in JobStatus},
            waiting=waiting,
            oldest_wait_ms=oldest_wait_ms,
            paused=paused,
            paused_types=paused_types,
        )

    @get(
        "/{job_id:uuid}",
        summary="One job; with `wait`, once it has ended",
        raises=[NotFoundException],
    )
    async def get_job(
        self,
        request: Request[Any, Any, Any],
        job_id: JobId,
        db_session: DbSession,
        principal: Caller,
        wait: Annotated[
            int,
            QueryParameter(
                ge=0,
                le=MAX_WAIT_S,
                description="Seconds to wait for the job to end (COMPLETED, FAILED or "
                "CANCELLED) before answering; it answers as soon as it has",
            ),
        ] = 0,
    ) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        job = await store.get(job_id)
        if wait and job.status not in ENDED:
            await db_session.commit()  # no connection held while waiting
            await _until_ended(request, job.id, job.tenant_id, wait)
            db_session.expire(job)  # read it again, not from the session's map
            job = await store.get(job_id)
        return job_out(job)

    @post(
        "/{job_id:uuid}/retry",
        status_code=200,
        summary="Replay a FAILED or CANCELLED job",
        raises=[NotFoundException, StatusConflict],
    )
    async def retry(
        self, job_id: JobId, db_session: DbSession, jobs: Jobs, principal: Caller
    ) -> JobOut:
        await _owned(JobStore(db_session), principal, job_id)
        return job_out(await jobs.retry(db_session, job_id))

    @post(
        "/retry",
        status_code=200,
        summary="Replay dead letters in bulk",
        raises=[*BODY, *TENANT_CHECKED],
    )
    async def retry_many(
        self, data: JSONBody[BulkRetry], db_session: DbSession, jobs: Jobs, principal: Caller
    ) -> Requeued:
        principal.check(data.tenant_id)
        replayed = await jobs.retry_many(
            db_session,
            data.tenant_id,
            ids=data.ids,
            job_type=data.type,
            failed_since=data.failed_since,
            limit=data.limit,
        )
        return Requeued(requeued=len(replayed), job_ids=[job.id for job in replayed])

    @post(
        "/{job_id:uuid}/cancel",
        status_code=200,
        summary="Cancel a PENDING or RUNNING job",
        raises=[NotFoundException, StatusConflict],
    )
    async def cancel(
        self, job_id: JobId, db_session: DbSession, jobs: Jobs, principal: Caller
    ) -> JobOut:
        await _owned(JobStore(db_session), principal, job_id)
        return job_out(await jobs.cancel(db_session, job_id))

    @patch(
        "/{job_id:uuid}",
        summary="Change the payload or maxAttempts of a PENDING job",
        raises=[*BODY, NotFoundException, StatusConflict],
    )
    async def update(
        self,
        job_id: JobId,
        data: JSONBody[JobPatch],
        db_session: DbSession,
        principal: Caller,
        runtime: AppRuntime,
    ) -> JobOut:
        store = JobStore(db_session)
        await _owned(store, principal, job_id)
        job = await store.get(job_id)
        changes: dict[str, Any] = {}
        if data.max_attempts is not None:
            changes["max_attempts"] = data.max_attempts
        if data.retry_base_ms is not None or data.retry_cap_ms is not None:
            own = (job.retry_base_ms, job.retry_cap_ms)
            if problem := data.backoff_problem(job.type, own, runtime.settings):
                field, why = problem
                raise ValidationException(
                    f"Validation failed for PATCH /jobs/{job_id}",
                    extra=[{"message": why, "key": field, "source": "body"}],
                )
            if data.retry_base_ms is not None:
                changes["retry_base_ms"] = data.retry_base_ms
            if data.retry_cap_ms is not None:
                changes["retry_cap_ms"] = data.retry_cap_ms
        if data.payload is not None:
            changes["payload"] = _validated_payload(job.type, data.payload)
            # Guard against a concurrent type change: the payload was checked for this type.
            changes["type"] = job.type
        if not changes:
            raise ValidationException(
                "nothing to change: send payload, maxAttempts, retryBaseMs and/or retryCapMs"
            )
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
    if job_type not in REGISTRY:
        raise ValidationException(f"the {job_type} job type is not registered here (FERRY_JOBS)")
    try:
        typed = msgspec.convert(payload, REGISTRY[job_type].payload_type)
    except msgspec.ValidationError as exc:
        article = "an" if job_type[0] in "aeiou" else "a"
        raise ValidationException(
            f"invalid payload for {article} {job_type} job", extra=[error_of(exc, "payload")]
        ) from exc
    return refuse_nul(msgspec.to_builtins(typed))


def with_request_types(controller: type[C], namespace: Mapping[str, Any]) -> type[C]:
    """`controller` (`/jobs`, `/schedules`) with the request types built from the job
    types (`request_types`, once per app) resolving its handlers' annotations."""
    return type(controller.__name__, (controller,), {"signature_namespace": dict(namespace)})


async def _until_ended(
    request: Request[Any, Any, Any], job_id: uuid.UUID, tenant_id: str, wait_s: int
) -> None:
    """Return once the tenant's events say the job ended, after `wait_s`, or when the
    server starts to stop: no polling, the request listens to the tenant's channel like
    a live subscriber. It reads the row again first (the job may have ended before it
    listened), and after a gap in what it heard."""
    runtime = runtime_of(request.app.state)
    channels = request.app.plugins.get(ChannelsPlugin)
    channel = channel_name(runtime.settings.redis_namespace, tenant_id)
    with anyio.move_on_after(wait_s):
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on, runtime.draining.stopping, group.cancel_scope)
            async with subscription(channels, channel) as subscriber:
                await _until_heard(runtime, job_id, subscriber.iter_events())
            group.cancel_scope.cancel()


async def _cancel_on(event: asyncio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _until_heard(runtime: Runtime, job_id: uuid.UUID, events: AsyncIterator[bytes]) -> None:
    if await _ended(runtime, job_id):
        return
    wanted, last_seq = str(job_id), 0
    async for data in events:
        if data != RECONNECTED and progress_after(data) is not None:
            continue  # a PROGRESS: not an end, and its seq is not the JOB_UPDATEs'
        if data == RECONNECTED or says_lost(data):
            if await _ended(runtime, job_id):
                return
            continue
        seq = seq_of(data)
        if last_seq and seq > last_seq + 1 and await _ended(runtime, job_id):
            return  # events were dropped for this slow listener: read again
        last_seq = seq
        event = msgspec.json.decode(data, type=dict[str, Any])
        if event.get("jobId") == wanted and event.get("status") in ENDED:
            return


async def _ended(runtime: Runtime, job_id: uuid.UUID) -> bool:
    async with AsyncSession(runtime.engine) as session:
        job = await session.get(Job, job_id)
        return job is None or job.status in ENDED
