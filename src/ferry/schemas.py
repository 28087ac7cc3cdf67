"""Wire formats: what clients send and what Ferry answers, camelCase on the wire.

A job's `type` tags its request, so msgspec validates each payload against the
struct of its type in one decode and names the offending field on error.

Patterns end in `$(?!\n)`: msgspec applies them with `re.search`, where a bare `$`
also matches before a trailing newline; the lookahead reads the same in Python and
in the OpenAPI document's ECMA regex dialect.
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
# Event seqs (Last-Event-ID): a signed 64-bit integer, what Redis and PostgreSQL hold.
MAX_SEQ = 2**63 - 1

# What each pattern expects, in words: error messages say this instead of the regex.
PATTERN_WORDS: dict[str, str] = {}


def _pattern(regex: str, words: str) -> str:
    PATTERN_WORDS[regex] = words
    return regex


def in_words(message: str) -> str:
    """A validation message with the regex it quotes said in words instead:
    msgspec says "Expected `str` matching regex '^[A-Za-z0-9]...'"."""
    if "matching regex" not in message:
        return message
    for regex, words in PATTERN_WORDS.items():
        message = message.replace(f"`str` matching regex {regex!r}", words)
    return message


TENANT_ID_WORDS = "1 to 100 letters, digits and . _ : - (starting with a letter or digit)"
TENANT_ID_PATTERN = _pattern(
    r"^[A-Za-z0-9][A-Za-z0-9._:-]*$(?!\n)", f"a tenant id: {TENANT_ID_WORDS}"
)
TenantId = Annotated[
    str,
    Meta(min_length=1, max_length=100, pattern=TENANT_ID_PATTERN, description=TENANT_ID_WORDS),
]
MaxAttempts = Annotated[int, Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)]
DelayMs = Annotated[int, Meta(ge=0, le=MAX_DELAY_MS)]


class _Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    pass


class SleepPayload(_Payload):
    delay_ms: Annotated[int, Meta(ge=0, le=600_000)]


def field_error(field: str, message: str) -> ValueError:
    """A `__post_init__` check's error about one of the struct's fields: msgspec reports
    it at the struct, and the API's error handler moves it to the field."""
    return ValueError(f"`{field}`: {message}")


# What the email package can put in a header and send without SMTPUTF8: an ASCII
# local part (atext and dots) and a domain name.
EMAIL_PATTERN = _pattern(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$(?!\n)",
    "an email address such as name@example.com (ASCII letters, digits and"
    " !#$%&'*+/=?^_`{|}~.- before the @, a domain name after it)",
)
# Every character str.splitlines() breaks at: the email package refuses them in headers.
ONE_LINE_PATTERN = _pattern(
    r"^[^\n\r\v\f\x1c-\x1e\x85\u2028\u2029]*$(?!\n)", "text on one line (no line breaks)"
)


class EmailPayload(_Payload):
    to: Annotated[str, Meta(pattern=EMAIL_PATTERN, max_length=320)]
    subject: Annotated[str, Meta(pattern=ONE_LINE_PATTERN, max_length=998)]
    body: Annotated[str, Meta(max_length=100_000)] = ""


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
URL_PATTERN = _pattern(r"^https?://[^\s]+$(?!\n)", "an http:// or https:// URL without spaces")
# What an HTTP/1.1 request line may carry (RFC 9110 token; field value without
# control characters or surrounding whitespace), in ASCII.
HEADER_NAME_PATTERN = _pattern(
    r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$(?!\n)",
    "an HTTP header name (ASCII letters, digits and !#$%&'*+.^_`|~-)",
)
HEADER_VALUE_PATTERN = _pattern(
    r"^(?:[!-~]+(?:[ \t]+[!-~]+)*)?$(?!\n)",
    "an HTTP header value (printable ASCII; spaces and tabs only between words)",
)
HeaderName = Annotated[str, Meta(pattern=HEADER_NAME_PATTERN, max_length=256)]
HeaderValue = Annotated[str, Meta(pattern=HEADER_VALUE_PATTERN, max_length=8192)]


class WebhookPayload(_Payload):
    url: Annotated[str, Meta(pattern=URL_PATTERN, max_length=2048)]
    method: HttpMethod = "POST"
    headers: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=50)] = {}
    body: Any = None
    timeout_ms: Annotated[int, Meta(ge=1, le=60_000)] = 10_000

    def __post_init__(self) -> None:
        if nests_deeper_than(self.body, MAX_BODY_DEPTH):
            raise field_error("body", f"nests deeper than {MAX_BODY_DEPTH} levels")


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
# The fewest values each operation is defined for (count and sum of none are 0).
MIN_VALUES: dict[str, int] = {
    "mean": 1, "median": 1, "min": 1, "max": 1, "percentiles": 1, "stdev": 2,
}  # fmt: skip


class DataProcessingPayload(_Payload):
    operation: Operation
    values: Annotated[list[float], Meta(max_length=1_000_000)]
    percentiles: Annotated[list[Annotated[float, Meta(ge=0, le=100)]], Meta(max_length=100)] = (
        msgspec.field(default_factory=lambda: [50.0, 90.0, 99.0])
    )

    def __post_init__(self) -> None:
        needed = MIN_VALUES.get(self.operation, 0)
        if len(self.values) < needed:
            plural = "s" if needed > 1 else ""
            raise field_error("values", f"{self.operation} needs at least {needed} value{plural}")


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
