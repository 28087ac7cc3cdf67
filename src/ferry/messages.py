"""The one message shape Ferry sends: `<job type>(job_id)` on the jobs queue."""

from __future__ import annotations

import dramatiq

JOBS_QUEUE = "jobs"


def job_message(job_id: str, job_type: str) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=JOBS_QUEUE, actor_name=job_type, args=(job_id,), kwargs={}, options={}
    )
