"""The one message shape Ferry sends: `<job type>(job_id)` on the jobs queue.

The tenant rides along as an option: the fair scheduler queues by it; so does
the job's priority, when it is not the default. A message the fair queue made
of several jobs of one tenant, type and priority carries the others' ids in
its `more` option (`ferry.worker.bundles`). A job sent for now to the
tenants' queues is encoded here once (`outgoing`), without Dramatiq's Message:
its copy and field walk cost the API a tenth of a batch's time.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import dramatiq
import msgspec
import uuid_utils

from ferry.db.models import DEFAULT_PRIORITY

JOBS_QUEUE = "jobs"


def job_message(
    job_id: str, job_type: str, tenant_id: str, priority: int = DEFAULT_PRIORITY
) -> dramatiq.Message:  # type: ignore[type-arg]
    return dramatiq.Message(
        queue_name=JOBS_QUEUE,
        actor_name=job_type,
        args=(job_id,),
        kwargs={},
        options=_options(tenant_id, priority),
        # uuid_utils: Dramatiq's default (uuid.uuid4) reads os.urandom on every call.
        message_id=str(uuid_utils.uuid4()),
    )


def _options(tenant_id: str, priority: int) -> dict[str, Any]:
    options: dict[str, Any] = {"tenant": tenant_id}
    if priority != DEFAULT_PRIORITY:
        options["priority"] = priority
    return options


class Outgoing(NamedTuple):
    """A message for its tenant's queue: where it goes, and its encoding."""

    tenant_id: str
    redis_message_id: str
    priority: int
    data: bytes


class _Wire(msgspec.Struct):
    """Dramatiq's message as its JSON encoder writes it (`Message.asdict`)."""

    queue_name: str
    actor_name: str
    args: tuple[str]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    message_id: str
    message_timestamp: int


_encode = msgspec.json.Encoder().encode


def outgoing(
    job_id: str, job_type: str, tenant_id: str, priority: int = DEFAULT_PRIORITY
) -> Outgoing:
    """`job_message` with its Redis id, encoded: what the fair broker would push for it."""
    redis_message_id = str(uuid_utils.uuid4())
    options = _options(tenant_id, priority) | {"redis_message_id": redis_message_id}
    wire = _Wire(
        JOBS_QUEUE,
        job_type,
        (job_id,),
        {},
        options,
        str(uuid_utils.uuid4()),
        int(time.time() * 1000),
    )
    return Outgoing(tenant_id, redis_message_id, priority, _encode(wire))


def outgoing_of(message: dramatiq.Message) -> Outgoing:  # type: ignore[type-arg]
    """A job message that has its Redis id, as its tenant's queue takes it."""
    tenant = tenant_of(message)
    assert tenant is not None, "only a job message with a tenant goes to a tenant's queue"
    return Outgoing(
        tenant, message.options["redis_message_id"], priority_of(message), message.encode()
    )


def job_ids_of(message: dramatiq.Message) -> list[str]:  # type: ignore[type-arg]
    """The jobs a message carries: its own, then those of `more`."""
    return [message.args[0], *message.options.get("more", ())]


def priority_of(message: dramatiq.Message) -> int:  # type: ignore[type-arg]
    return int(message.options.get("priority", DEFAULT_PRIORITY))


def tenant_of(message: dramatiq.Message) -> str | None:  # type: ignore[type-arg]
    tenant: str | None = message.options.get("tenant")
    return tenant
