"""The one message shape Ferry sends: `<job type>(job_id)` on the jobs queue.

The tenant rides along as an option: the fair scheduler queues by it.
"""

from __future__ import annotations

import dramatiq

JOBS_QUEUE = "jobs"


def job_message(job_id: str, job_type: str, tenant_id: str) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=JOBS_QUEUE,
        actor_name=job_type,
        args=(job_id,),
        kwargs={},
        options={"tenant": tenant_id},
    )


def tenant_of(message: dramatiq.Message) -> str | None:  # type: ignore[type-arg]
    tenant: str | None = message.options.get("tenant")
    return tenant
