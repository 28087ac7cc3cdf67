"""Wire formats: what clients send and what Ferry answers, camelCase on the wire.

A job's `type` tags its request, so msgspec validates each payload against the
struct of its type (`ferry.jobs.payloads`) in one decode and names the offending
field on error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ferry.fields import TenantId
from ferry.jobs.payloads import (
    DataProcessingPayload,
    EmailPayload,
    SleepPayload,
    WebhookPayload,
)

MAX_ATTEMPTS_LIMIT = 25
MAX_CREATE_DELAY_MS = 7 * 24 * 3600 * 1000
MAX_BATCH = 1000
MAX_LIST_LIMIT = 500
# Deep offsets are slow (the database walks past them) and past this are no use.
MAX_LIST_OFFSET = 10_000_000
# Event seqs (Last-Event-ID): a signed 64-bit integer, what Redis and PostgreSQL hold.
MAX_SEQ = 2**63 - 1

MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)]
DelayMs = Annotated[int, Meta(ge=0, le=MAX_CREATE_DELAY_MS)]


class _NewJob(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="type"
):
    tenant_id: TenantId
    max_attempts: MaxAttempts | None = None
    delay_ms: DelayMs = 0


class NewSleepJob(_NewJob, tag="sleep"):
    payload: SleepPayload


class NewEmailJob(_NewJob, tag="email"):
    payload: EmailPayload


class NewWebhookJob(_NewJob, tag="webhook"):
    payload: WebhookPayload


class NewDataProcessingJob(_NewJob, tag="data_processing"):
    payload: DataProcessingPayload


NewJob = NewSleepJob | NewEmailJob | NewWebhookJob | NewDataProcessingJob


def job_type_of(job: NewJob) -> str:
    return type(job).__struct_config__.tag  # type: ignore[return-value]


class NewJobBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    jobs: Annotated[list[NewJob], Meta(min_length=1, max_length=MAX_BATCH)]


class JobPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Changes to a PENDING job; `payload` is validated against the job's type."""

    payload: dict[str, Any] | None = None
    max_attempts: MaxAttempts | None = None


JobTypeName = Literal["sleep", "email", "webhook", "data_processing"]


class BulkRetry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Replay dead letters: the given FAILED/CANCELLED jobs, or FAILED jobs matching a filter."""

    tenant_id: TenantId
    ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=MAX_BATCH)] | None = None
    type: JobTypeName | None = None
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


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    # Which process answered (host:pid): behind a load balancer, tells replicas apart.
    instance: str = ""
    checks: dict[str, str] = {}
