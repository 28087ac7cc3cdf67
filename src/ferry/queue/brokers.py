"""The Dramatiq broker: Redis in production, an in-process stub on the embedded default.

An API process only sends on it; a worker process also runs jobs on it, once
`ferry.worker.boot.install` has added Ferry's middleware and declared the actors.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import TimeLimit

from ferry.queue.fair.broker import FairRedisBroker
from ferry.queue.group_ack import GroupAckRedisBroker
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    # Ferry keeps retries, dead letters and status in PostgreSQL, so Dramatiq's
    # own Retries middleware is left out: a message is acked once its outcome
    # is committed, and a retry is a new, delayed message.
    middleware: list[dramatiq.Middleware] = [TimeLimit()]
    broker: dramatiq.Broker
    if settings.redis_url is None:
        broker = StubBroker(middleware=middleware)
    else:
        # A worker silent for a lease is dead (each process says it is alive every
        # heartbeat): the messages it fetched return to the queue when its jobs do.
        options = {
            "url": settings.redis_url,
            "namespace": settings.redis_namespace,
            "middleware": middleware,
            "heartbeat_timeout": settings.lease_ms,
        }
        if settings.fair_scheduling:
            broker = FairRedisBroker(
                depth=settings.fair_queue_depth, bundle=settings.bundle_size, **options
            )
        else:
            broker = GroupAckRedisBroker(**options)
    broker.declare_queue(JOBS_QUEUE)
    return broker
