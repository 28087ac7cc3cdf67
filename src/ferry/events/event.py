"""The event of a committed status change, the event of a job's progress, and their wire
form."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

import msgspec


class JobEvent(msgspec.Struct, frozen=True, rename="camel"):
    """As streamed to subscribers; the event log adds the tenant's `seq`."""

    tenant_id: str
    job_id: uuid.UUID
    status: str
    attempts: int
    error: str | None
    at: datetime
    type: str = "JOB_UPDATE"


class JobState(Protocol):
    """What an event tells of a job (a row of the jobs table, say)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def error(self) -> str | None: ...


class NewJob(Protocol):
    @property
    def tenant_id(self) -> str: ...
    @property
    def id(self) -> uuid.UUID: ...


def event_of(job: JobState, at: datetime) -> JobEvent:
    """The event of the change that left `job` as it is, made at `at`."""
    return JobEvent(job.tenant_id, job.id, job.status, job.attempts, job.error, at)


def pending_events(jobs: Iterable[NewJob], at: datetime) -> list[JobEvent]:
    """The PENDING event that announces each new (or replayed) job."""
    return [JobEvent(job.tenant_id, job.id, "PENDING", 0, None, at) for job in jobs]


class EventsLost(msgspec.Struct, frozen=True, rename="camel"):
    """Appended to a tenant's log where events of committed changes could not be appended
    as they were: its subscribers get RESYNC (at this entry's seq) and re-read over REST."""

    type: str
    tenant_id: str


def events_lost(tenant_id: str) -> EventsLost:
    return EventsLost("RESYNC", tenant_id)


class ProgressEvent(msgspec.Struct, frozen=True, rename="camel"):
    """What a running job's handler reported (`ctx.progress`), as streamed to subscribers.

    Not a status change: the event log numbers it with a `seq` of its own (a gap in
    it means nothing), keeps no history of it, and adds `after`, the tenant's last
    JOB_UPDATE seq when it was published, which places it among the JOB_UPDATEs.
    `type` goes first, so that the log and the feeds can tell it without parsing it."""

    type: str
    tenant_id: str
    job_id: uuid.UUID
    progress: float
    message: str | None
    at: datetime


def progress_event(
    tenant_id: str, job_id: uuid.UUID, progress: float, message: str | None, at: datetime
) -> ProgressEvent:
    return ProgressEvent("PROGRESS", tenant_id, job_id, progress, message, at)


Event = JobEvent | EventsLost | ProgressEvent


# Not an event: told to every subscriber when its process's pub/sub connection
# came back after a loss (`ferry.events.channels`), so that it checks the log
# for what was published meanwhile.
RECONNECTED = b""

_encoder = msgspec.json.Encoder()
_SEQ_PREFIX = b'{"seq":'
_LOST = b'"type":"RESYNC"'
_ENCODED_PROGRESS = b'{"type":"PROGRESS",'  # how `encode` starts a ProgressEvent
_PROGRESS = b'"type":"PROGRESS","after":'


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def with_seq(data: bytes, seq: int) -> bytes:
    """`{"seq":N,` + the encoded event's fields: seq first, so it is cheap to read back."""
    return b"%s%d,%s" % (_SEQ_PREFIX, seq, data[1:])


def seq_of(data: bytes) -> int:
    """The seq of an event as `with_seq` (or the Redis script) wrote it, without parsing it."""
    return int(data[len(_SEQ_PREFIX) : data.index(b",", len(_SEQ_PREFIX))])


def says_lost(data: bytes) -> bool:
    """Whether a logged entry is an `EventsLost` rather than a job's event."""
    return data.startswith(_LOST, data.index(b",", len(_SEQ_PREFIX)) + 1)


def with_progress_seq(data: bytes, seq: int, after: int) -> bytes:
    """An encoded `ProgressEvent` as published: `{"seq":N,"type":"PROGRESS","after":M,` + its
    other fields (the Redis script writes the same)."""
    return b"%s%d,%s%d,%s" % (_SEQ_PREFIX, seq, _PROGRESS, after, data[len(_ENCODED_PROGRESS) :])


def progress_after(data: bytes) -> int | None:
    """The `after` of a published `ProgressEvent`; None for any other event (a JOB_UPDATE,
    a RESYNC), without parsing it."""
    start = data.index(b",", len(_SEQ_PREFIX)) + 1
    if not data.startswith(_PROGRESS, start):
        return None
    start += len(_PROGRESS)
    return int(data[start : data.index(b",", start)])


def channel_name(namespace: str, tenant_id: str) -> str:
    """The channel a tenant's live events are published on."""
    return f"{namespace}:events:live:{tenant_id}"


# A message on a tenant's channel holds one or more of its events in order, one a line
# (an encoded event has no raw newline): the event logs publish the events of one
# append together, so that a reader pays for a message, not for each event.
_LINE = b"\n"


def published(events: list[bytes]) -> bytes:
    """One message of `events`, in order."""
    return _LINE.join(events)


def events_in(message: bytes) -> list[bytes]:
    """The events of a published message, in order."""
    return message.split(_LINE)
