"""Sends committed jobs to their Dramatiq actors.

The API calls `send` only after the rows are committed, so a worker never
sees a message for a row that does not exist yet. A failed send is logged and
swallowed: the row stays PENDING with `next_run_at` due, and the recovery pass
(`ferry.recovery`) re-sends every PENDING job that is overdue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import anyio.to_thread
import dramatiq

from ferry.messages import job_message
from ferry.store import Enqueued

log = logging.getLogger(__name__)


def send_now(broker: dramatiq.Broker, jobs: Iterable[Enqueued]) -> None:
    """Blocking: enqueue each job (Redis round trips), delayed ones on the delay queue."""
    for job in jobs:
        broker.enqueue(job_message(str(job.id), job.type), delay=job.delay_ms or None)


class Dispatcher:
    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    async def send(self, jobs: Sequence[Enqueued]) -> bool:
        """Enqueue off the event loop; False (and logged) if the broker refused."""
        if not jobs:
            return True
        try:
            await anyio.to_thread.run_sync(send_now, self.broker, jobs)
        except Exception:
            log.exception("enqueue failed for %d job(s); the recovery pass will re-send", len(jobs))
            return False
        return True
