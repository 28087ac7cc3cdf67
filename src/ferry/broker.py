"""The Dramatiq broker: Redis in production, an in-process stub on the embedded default."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import TimeLimit

from ferry.fairness.broker import FairRedisBroker
from ferry.messages import JOBS_QUEUE
from ferry.realtime.log import EventLog
from ferry.settings import Settings
from ferry.worker.acks import GroupAckRedisBroker
from ferry.worker.lifecycle import JobLifecycle


def build_broker(settings: Settings, events: EventLog | None = None) -> dramatiq.Broker:
    # Ferry keeps retries, dead letters and status in PostgreSQL, so Dramatiq's
    # own Retries middleware is left out: a message is acked once its outcome
    # is committed, and a retry is a new, delayed message. JobLifecycle comes
    # first: it claims before the time limit starts and records the outcome
    # after the limit is cleared, so a limit can only ever interrupt the job.
    middleware: list[dramatiq.Middleware] = [JobLifecycle(settings, events), TimeLimit()]
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
            broker = FairRedisBroker(depth=settings.fair_queue_depth, **options)
        else:
            broker = GroupAckRedisBroker(**options)
    broker.declare_queue(JOBS_QUEUE)
    return broker


_ferry_broker: dramatiq.Broker | None = None


def install_broker(broker: dramatiq.Broker, settings: Settings) -> dramatiq.Broker:
    """Make `broker` the process-wide broker and declare every job actor on it."""
    global _ferry_broker
    _ferry_broker = broker
    dramatiq.set_broker(broker)
    import actors  # noqa: F401  (its modules register the job handlers)
    from ferry.worker.runtime import declare_actors

    declare_actors(broker, settings)
    return broker


def current_broker() -> dramatiq.Broker:
    """The broker Ferry installed in this process, or one built from the environment."""
    if _ferry_broker is not None:
        return _ferry_broker
    from ferry.logs import configure as configure_logging
    from ferry.settings import load_settings

    settings = load_settings()
    # Only a worker process started by `dramatiq actors` gets here: its logging is Ferry's.
    configure_logging(settings)
    return install_broker(build_broker(settings), settings)
