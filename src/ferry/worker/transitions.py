"""Status transitions a worker records (pure data)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ferry.models import JobStatus

ERROR_LIMIT = 2000  # characters of a job's error that are kept


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker moved PENDING -> RUNNING: everything a handler needs."""

    id: uuid.UUID
    tenant_id: str
    type: str
    payload: Any
    attempts: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: COMPLETED, FAILED, or PENDING again (retry scheduled)."""

    job_id: uuid.UUID
    status: JobStatus
    result: Any = None
    error: str | None = None
    next_run_at: datetime | None = None
    # Retries only: the delay of the message that will run the next attempt.
    retry_delay_ms: int = field(default=0, compare=False)
