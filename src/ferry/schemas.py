"""Wire formats: what clients send and what Ferry answers, camelCase on the wire.

A job's `type` tags its request, so msgspec validates each payload against the
struct of its type in one decode and names the offending field on error.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

MAX_ATTEMPTS_LIMIT = 25
MAX_DELAY_MS = 7 * 24 * 3600 * 1000
MAX_BATCH = 1000
MAX_LIST_LIMIT = 500
# Deep offsets are slow (the database walks past them) and past this are no use.
MAX_LIST_OFFSET = 10_000_000

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
TenantId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=TENANT_ID_PATTERN,
        description="Letters, digits and . _ : - (starting with a letter or digit).",
    ),
]
MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)]
DelayMs = Annotated[int, Meta(ge=0, le=MAX_DELAY_MS)]


class _Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    pass


class SleepPayload(_Payload):
    delay_ms: Annotated[int, Meta(ge=0, le=600_000)]


class EmailPayload(_Payload):
    to: Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
    subject: Annotated[str, Meta(max_length=998)]
    body: Annotated[str, Meta(max_length=100_000)] = ""


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class WebhookPayload(_Payload):
    url: Annotated[str, Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]
    method: HttpMethod = "POST"
    headers: Annotated[dict[str, str], Meta(max_length=50)] = {}
    body: Any = None
    timeout_ms: Annotated[int, Meta(ge=1, le=60_000)] = 10_000

    def __post_init__(self) -> None:
        if nests_deeper_than(self.body, MAX_BODY_DEPTH):
            raise ValueError(f"body nests deeper than {MAX_BODY_DEPTH} levels")


MAX_BODY_DEPTH = 32


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest more than `limit` levels deep (iteratively: a
    hostile body must not exhaust the stack)."""
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is None:
            continue
        if level >= limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


Operation = Literal["count", "sum", "mean", "median", "min", "max", "stdev", "percentiles"]


class DataProcessingPayload(_Payload):
    operation: Operation
    values: Annotated[list[float], Meta(max_length=1_000_000)]
    percentiles: Annotated[list[Annotated[float, Meta(ge=0, le=100)]], Meta(max_length=100)] = (
        msgspec.field(default_factory=lambda: [50.0, 90.0, 99.0])
    )


PAYLOAD_TYPES: dict[str, type[_Payload]] = {
    "sleep": SleepPayload,
    "email": EmailPayload,
    "webhook": WebhookPayload,
    "data_processing": DataProcessingPayload,
}
JOB_TYPES = tuple(PAYLOAD_TYPES)


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
    failed_since: datetime | None = None
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
