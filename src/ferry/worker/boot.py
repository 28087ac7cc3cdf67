"""A process becomes a worker: Ferry's middleware on its broker, the job types as actors.

`dramatiq actors` imports the `actors` package, which calls `current_broker()`;
the embedded app calls `install` on the broker it sends to.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import TimeLimit

from ferry.events.log import EventLog
from ferry.jobs import registry
from ferry.observability.logs import configure as configure_logging
from ferry.queue.brokers import build_broker
from ferry.queue.sender import Sender
from ferry.settings import Settings, load_settings
from ferry.worker.actors import declare_actors
from ferry.worker.lifecycle import JobLifecycle
from ferry.worker.services import WorkerServices

_installed: dramatiq.Broker | None = None


def install(
    broker: dramatiq.Broker, settings: Settings, events: EventLog | None = None
) -> dramatiq.Broker:
    """Run jobs on `broker` in this process, and make it the process-wide broker.

    The lifecycle comes before the time limit: it claims before the limit starts and
    records the outcome after the limit is cleared (Dramatiq runs the `after_` hooks in
    reverse), so a limit can only ever interrupt the job itself."""
    global _installed
    try:
        registry.load(settings.job_modules)
    except registry.JobTypeError as exc:
        raise SystemExit(f"ferry: {exc}") from exc
    services = WorkerServices(settings, events)
    broker.add_middleware(services, before=TimeLimit)
    broker.add_middleware(JobLifecycle(settings, services, Sender(broker)), before=TimeLimit)
    dramatiq.set_broker(broker)
    declare_actors(broker, settings)
    _installed = broker
    return broker


def current_broker() -> dramatiq.Broker:
    """The broker this process runs jobs on: installed already, or built from the environment."""
    if _installed is not None:
        return _installed
    settings = load_settings()
    # Only a worker process started by `dramatiq actors` gets here: its logging is Ferry's.
    configure_logging(settings)
    return install(build_broker(settings), settings)
