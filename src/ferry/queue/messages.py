"""The one message shape Ferry sends: `<job type>(job_id)` on the jobs queue.

The tenant rides along as an option: the fair scheduler queues by it; so does
the job's priority, when it is not the default.
"""

from __future__ import annotations

import dramatiq
import uuid_utils

from ferry.db.models import DEFAULT_PRIORITY

JOBS_QUEUE = "jobs"


def job_message(
    job_id: str, job_type: str, tenant_id: str, priority: int = DEFAULT_PRIORITY
) -> dramatiq.Message:  # type: ignore[type-arg]
    options: dict[str, object] = {"tenant": tenant_id}
    if priority != DEFAULT_PRIORITY:
        options["priority"] = priority
    return dramatiq.Message(
        queue_name=JOBS_QUEUE,
        actor_name=job_type,
        args=(job_id,),
        kwargs={},
        options=options,
        # uuid_utils: Dramatiq's default (uuid.uuid4) reads os.urandom on every call.
        message_id=str(uuid_utils.uuid4()),
    )


def priority_of(message: dramatiq.Message) -> int:  # type: ignore[type-arg]
    return int(message.options.get("priority", DEFAULT_PRIORITY))


def tenant_of(message: dramatiq.Message) -> str | None:  # type: ignore[type-arg]
    tenant: str | None = message.options.get("tenant")
    return tenant
