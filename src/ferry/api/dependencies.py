"""What route handlers are given, by the name of their parameter, typed: the app's
runtime parts, built once when it starts (`ferry.app.AppParts`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ferry.api.auth import Principal, provide_principal
from ferry.api.draining import Draining
from ferry.events.log import EventLog
from ferry.observability.metrics import MetricsStore
from ferry.queue.sender import Sender
from ferry.service.jobs import JobService
from ferry.settings import Settings


@dataclass(slots=True)
class Runtime:
    """The parts of a running app that its handlers use."""

    settings: Settings
    engine: AsyncEngine
    events: EventLog
    sender: Sender
    jobs: JobService
    metrics: MetricsStore
    draining: Draining
    redis: aioredis.Redis | None


def runtime_of(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


def _part(name: str) -> Provide:
    # `principal` only orders this lookup after the principal's: Litestar resolves a
    # request's independent dependencies concurrently, in a task group per request,
    # which costs more than both lookups (docs/performance.md). The principal is an
    # HTTP request's: a WebSocket handler asks for `runtime` instead.
    def provide(state: State, principal: Caller) -> Any:
        return getattr(runtime_of(state), name)

    return Provide(provide, sync_to_thread=False)


DEPENDENCIES = {
    "principal": Provide(provide_principal, sync_to_thread=False),
    **{name: _part(name) for name in ("settings", "events", "sender", "jobs", "metrics")},
    "runtime": Provide(runtime_of, sync_to_thread=False),
}

# A handler asks for one by its parameter's name and type, e.g. `jobs: Jobs`.
Caller = NamedDependency[Principal]  # who the request acts as (ferry.api.auth)
DbSession = NamedDependency[AsyncSession]  # the request's session (advanced-alchemy)
Jobs = NamedDependency[JobService]
Sends = NamedDependency[Sender]  # as `sender`
Metrics = NamedDependency[MetricsStore]
Configured = NamedDependency[Settings]  # as `settings`
AppRuntime = NamedDependency[Runtime]  # as `runtime`: all of the above
