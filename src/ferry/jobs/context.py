"""What a handler is told about the job it runs."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: uuid.UUID
    tenant_id: str
    job_type: str
    attempt: int  # 1 for the first
    max_attempts: int
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def aborted(self) -> bool:
        """Whether the job was cancelled while it runs: a long handler checks it and
        returns early (a sync handler is also interrupted at its next bytecode)."""
        return self._cancelled.is_set()

    @property
    def log(self) -> logging.Logger:
        """A logger whose lines carry the job's and its tenant's ids (as all lines of a
        worker thread running a job do)."""
        return logging.getLogger(f"ferry.jobs.{self.job_type}")
