"""Dramatiq's Redis broker, with jobs sent to their tenant's queue instead of the shared one.

Whatever sends a job for now lands here: the Sender's `push` (or `push_on`,
through the API's asyncio client) of messages it encoded without Dramatiq's
Message (`ferry.queue.messages.outgoing`), and `enqueue` for a retry whose
delay is over (Dramatiq's delay queue re-enqueues it). A message for now
with a `tenant` option joins that tenant's queue; the rest
(delayed messages, other queues) take Dramatiq's own path. Workers fetch from
Dramatiq's queue as ever: the CLI, acks and requeues of dead workers are
untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dramatiq
import redis.asyncio as aioredis
import uuid_utils

from ferry.queue.fair.queue import FairQueue
from ferry.queue.group_ack import GroupAckRedisBroker
from ferry.queue.messages import JOBS_QUEUE, Outgoing, outgoing_of, tenant_of

PUSH_CHUNK = 500  # messages per script call: keeps Redis responsive to others


class FairRedisBroker(GroupAckRedisBroker):
    def __init__(self, *, depth: int, bundle: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self.fair = FairQueue(self.client, self.namespace, JOBS_QUEUE, depth, bundle)

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:  # type: ignore[type-arg]
        if delay or message.queue_name != JOBS_QUEUE or tenant_of(message) is None:
            return super().enqueue(message, delay=delay)
        return self.enqueue_many([message])[0]

    def enqueue_many(self, messages: Sequence[dramatiq.Message]) -> list[dramatiq.Message]:  # type: ignore[type-arg]
        """Send messages for now to their tenants' queues, a chunk per Redis round trip."""
        sent = []
        for chunk in self._chunks(messages):
            self.fair.push([outgoing_of(message) for message in chunk])
            sent += chunk
        return sent

    def push(self, messages: Sequence[Outgoing]) -> None:
        """Send encoded messages for now to their tenants' queues, a chunk per Redis
        round trip. Dramatiq's enqueue hooks do not run (Ferry's middleware has none)."""
        for start in range(0, len(messages), PUSH_CHUNK):
            self.fair.push(messages[start : start + PUSH_CHUNK])

    async def push_on(self, client: aioredis.Redis, messages: Sequence[Outgoing]) -> None:
        """`push` through an asyncio client: no thread hop on the API's loop."""
        for start in range(0, len(messages), PUSH_CHUNK):
            await self.fair.push_on(client, messages[start : start + PUSH_CHUNK])

    def _chunks(self, messages: Sequence[dramatiq.Message]) -> Iterator[list[dramatiq.Message]]:  # type: ignore[type-arg]
        """The messages with their Redis ids, a chunk at a time, inside Dramatiq's
        enqueue hooks: the caller pushes each chunk before asking for the next."""
        sent = [
            message.copy(options={"redis_message_id": str(uuid_utils.uuid4())})
            for message in messages
        ]
        for start in range(0, len(sent), PUSH_CHUNK):
            chunk = sent[start : start + PUSH_CHUNK]
            for message in chunk:
                self.emit_before("enqueue", message, None)
            yield chunk
            for message in chunk:
                self.emit_after("enqueue", message, None)


def fair_broker(broker: dramatiq.Broker) -> FairRedisBroker | None:
    """`broker` if it schedules fairly, else None: the one place that asks whether
    fair scheduling is on."""
    return broker if isinstance(broker, FairRedisBroker) else None


def fair_queue(broker: dramatiq.Broker) -> FairQueue | None:
    """The tenants' queues when fair scheduling is on, else None."""
    fair = fair_broker(broker)
    return None if fair is None else fair.fair
