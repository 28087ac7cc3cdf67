"""The tables: `jobs`, the source of truth for every job, and what serves them."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

import uuid_utils
from advanced_alchemy.types import GUID, DateTimeUTC
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL, JSON text elsewhere (advanced-alchemy's JsonB breaks on SQLAlchemy 2.1).
JsonColumn = JSON().with_variant(JSONB(), "postgresql")


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


RETRYABLE_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)
DEFAULT_PRIORITY = 5  # of 0 (lowest) to 9


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> uuid.UUID:
    # UUIDv7: time-ordered, so the primary key index stays append-mostly and
    # breaks ties between jobs created in the same instant in creation order.
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)


def new_mark() -> uuid.UUID:
    """The id of a job_event_outbox row: random, it only has to be unique."""
    return uuid.UUID(bytes=uuid_utils.uuid4().bytes)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_job_id)
    tenant_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[Any] = mapped_column(JsonColumn)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[Any | None] = mapped_column(JsonColumn, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    next_run_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # What the running attempt last reported (`ctx.progress`); reset by each claim.
    progress: Mapped[float | None] = mapped_column(Float, default=None)
    progress_message: Mapped[str | None] = mapped_column(Text, default=None)
    # This job's own backoff (its type's when NULL).
    retry_base_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    retry_cap_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    # Internal: renewed by the worker running the job; a stale one means the worker died.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    # 0 (lowest) to 9: within its tenant's turn, a higher priority is taken first.
    priority: Mapped[int] = mapped_column(
        SmallInteger, default=DEFAULT_PRIORITY, server_default=text("5")
    )
    # Due too far ahead to wait in Redis: no message yet, the dispatcher sends it when due.
    parked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A job a schedule fired: the schedule, and the due time it fired for.
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)

    __table_args__ = (
        # Listing is always newest first with `id` as the tie-breaker: these
        # indexes serve the tenant listing with and without a status/type filter.
        Index("ix_jobs_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_jobs_tenant_status_created",
            "tenant_id",
            "status",
            text("created_at DESC"),
            text("id DESC"),
        ),
        Index("ix_jobs_tenant_type_created", "tenant_id", "type", text("created_at DESC")),
        # Listing across tenants, and the recovery pass over due PENDING jobs.
        Index("ix_jobs_created", text("created_at DESC"), text("id DESC")),
        # The id: the recovery pass reads on from a (due time, id) among jobs due together.
        Index("ix_jobs_status_due", "status", "next_run_at", "id"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        # What the recovery pass prunes: finished jobs, the longest finished first.
        Index("ix_jobs_status_finished", "status", "finished_at"),
        # What the dispatcher looks for: the parked jobs, soonest due first.
        Index(
            "ix_jobs_parked_next_run",
            "next_run_at",
            postgresql_where=text("parked"),
            sqlite_where=text("parked"),
        ),
        # A schedule fires once per due time, however many workers try at once.
        Index(
            "ux_jobs_schedule_due",
            "schedule_id",
            "scheduled_for",
            unique=True,
            postgresql_where=text("schedule_id IS NOT NULL"),
            sqlite_where=text("schedule_id IS NOT NULL"),
        ),
    )


class Schedule(Base):
    """A tenant's cron schedule: the job it creates at each due time."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_job_id)
    tenant_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    missed: Mapped[str] = mapped_column(String(8))
    # The job each due time creates.
    job_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[Any] = mapped_column(JsonColumn)
    max_attempts: Mapped[int | None] = mapped_column(Integer, default=None)
    priority: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    # The next due time; its firing moves it on.
    next_run_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    # The due time it last fired for, and the job it created.
    last_run_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), default=None)
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(GUID, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)

    __table_args__ = (
        Index("ux_schedules_tenant_name", "tenant_id", "name", unique=True),
        # What the schedulers look for: the active schedules that are due.
        Index("ix_schedules_paused_next_run", "paused", "next_run_at"),
    )


class Pause(Base):
    """A paused tenant (`job_type` empty) or job type of a tenant: its jobs are not
    started until it is resumed."""

    __tablename__ = "pauses"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(32), primary_key=True)  # "": every type
    paused_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)


class IdempotencyKey(Base):
    """A create request's `Idempotency-Key`: the jobs it created, for 24 hours."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # SHA-256 of the request as decoded: the same key with another body is a conflict.
    request_hash: Mapped[str] = mapped_column(String(64))
    job_ids: Mapped[Any] = mapped_column(JsonColumn)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)


class ApiKey(Base):
    """A tenant's API key (FERRY_AUTH=on): only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_job_id)
    tenant_id: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class TenantLimit(Base):
    """A tenant's share of the workers (fair scheduling): weight, running cap, rate."""

    __tablename__ = "tenant_limits"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # How long its finished jobs are kept, by status (NULL: the deployment's RETENTION_*).
    retention_completed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    retention_failed_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    retention_cancelled_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), default=utcnow)


class JobCount(Base):
    """Jobs per (tenant, type, status), summed over shards: kept by triggers on
    PostgreSQL (migration 0006), absent on SQLite (which counts rows instead)."""

    __tablename__ = "job_counts"

    tenant_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class JobEventOutbox(Base):
    """The jobs one committed statement changed, kept until their events are appended
    (PostgreSQL only, migration 0007): `id` marks the append in Redis, `at` is the
    `updated_at` the statement gave them."""

    __tablename__ = "job_event_outbox"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    job_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
