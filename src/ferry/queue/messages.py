"""The one message shape Ferry sends: `<job type>(job_id)` on the jobs queue.

The tenant rides along as an option: the fair scheduler queues by it.
"""

from __future__ import annotations

import dramatiq
import uuid_utils

JOBS_QUEUE = "jobs"


def job_message(job_id: str, job_type: str, tenant_id: str) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=JOBS_QUEUE,
        actor_name=job_type,
        args=(job_id,),
        kwargs={},
        options={"tenant": tenant_id},
        # uuid_utils: Dramatiq's default (uuid.uuid4) reads os.urandom on every call.
        message_id=str(uuid_utils.uuid4()),
    )


def tenant_of(message: dramatiq.Message) -> str | None:  # type: ignore[type-arg]
    tenant: str | None = message.options.get("tenant")
    return tenant
