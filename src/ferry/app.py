"""The Litestar application factory: `ferry.app:create_app`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import dramatiq
import redis.asyncio as aioredis
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.config.app import AppConfig
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPluginProtocol
from litestar.types import ControllerRouterHandler

from ferry.api.answers import RouteAnswers
from ferry.api.auth import TenantKeyAuth
from ferry.api.bodies import JsonBodyRequest
from ferry.api.dashboard import dashboard, dashboard_assets
from ferry.api.dependencies import DEPENDENCIES, Runtime
from ferry.api.draining import Draining
from ferry.api.errors import EXCEPTION_HANDLERS, internal_error
from ferry.api.health import health, ready
from ferry.api.job_types import job_types
from ferry.api.jobs import JobController, with_request_types
from ferry.api.metrics import metrics as metrics_route
from ferry.api.openapi import openapi_config
from ferry.api.request_ids import request_ids
from ferry.api.schedules import ScheduleController
from ferry.api.tenants import TenantKeyController, TenantLimitsController, TenantPauseController
from ferry.db.engine import create_engine
from ferry.events.channels import build_channels
from ferry.events.log import Deliver, EventLog, MemoryEventLog
from ferry.events.redis_log import RedisEventLog
from ferry.jobs import registry
from ferry.observability.metrics import (
    INSTANCE,
    MemoryMetricsStore,
    MetricsStore,
    RedisMetricsStore,
    flush,
    flush_every,
    recorder,
)
from ferry.queue.brokers import build_broker
from ferry.queue.sender import Sender
from ferry.redis_client import cancel_until_done, connect
from ferry.service.jobs import JobService
from ferry.service.schemas import request_types
from ferry.settings import Settings, load_settings
from ferry.sockets.live import live_events, live_socket
from ferry.worker.boot import install

log = logging.getLogger(__name__)


ROUTES: list[ControllerRouterHandler] = [
    job_types,
    TenantKeyController,
    TenantLimitsController,
    TenantPauseController,
    health,
    ready,
    metrics_route,
    live_socket,
    live_events,
    dashboard,
    dashboard_assets,
]


def create_app(settings: Settings | None = None, *, run_worker: bool | None = None) -> Litestar:
    """Build the app. `run_worker` (default: on the embedded default only) runs a
    Dramatiq worker inside this process, on the same broker the API sends to."""
    settings = settings or load_settings()
    # The job types, built in and FERRY_JOBS's, before the routes that validate them.
    try:
        registered = registry.load(settings.job_modules)
    except registry.JobTypeError as exc:
        raise SystemExit(f"ferry: {exc}") from exc
    parts = AppParts(settings, settings.embedded if run_worker is None else run_worker)
    db_config = SQLAlchemyAsyncConfig(
        engine_instance=parts.engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
    )
    # The request types built from the registered job types, once for every route.
    namespace = request_types(registered, settings)
    app = Litestar(
        route_handlers=[
            *(
                with_request_types(controller, namespace)
                for controller in (JobController, ScheduleController)
            ),
            *ROUTES,
        ],
        # The parts start after the channels plugin and stop before it: the
        # in-process worker publishes through it until it has stopped.
        plugins=[
            SQLAlchemyPlugin(config=db_config),
            parts.channels,
            LifespanAfterPlugins(parts.run),
            RouteAnswers(auth_on=settings.auth_on, open_paths=OPEN_PATHS),
        ],
        # Hooks run after every lifespan, the channels plugin's included.
        on_shutdown=[parts.pubsub.aclose] if parts.pubsub is not None else [],
        middleware=[request_ids, *_authentication(settings)],
        dependencies=DEPENDENCIES,
        logging_config=None,  # ferry.observability.logs configures the process's logging
        cors_config=_cors(settings),
        exception_handlers={**EXCEPTION_HANDLERS, Exception: internal_error},
        request_class=JsonBodyRequest,  # bodies: JSON only, decoded strictly (ferry.api.bodies)
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(),  # its UI's assets served by Ferry (ferry.api.openapi)
    )
    # For the authentication middleware and guards, and the server's signal handler.
    app.state.update(settings=settings, engine=parts.engine, draining=parts.draining)
    return app


class AppParts:
    """What one app process is made of: built with the app, started by its lifespan."""

    def __init__(self, settings: Settings, run_worker: bool) -> None:
        self.settings = settings
        self.run_worker = run_worker
        self.redis = _redis(settings, socket_timeout=5, socket_connect_timeout=2)
        # Pub/sub holds its connection open: a client of its own, without a read timeout.
        self.pubsub = _redis(settings)
        self.channels = build_channels(settings, self.pubsub)
        self.events: EventLog
        self.metrics: MetricsStore
        if self.redis is None:
            self.events = MemoryEventLog(
                settings.redis_namespace,
                _drop,
                retain=settings.event_history,
                mark_ttl_ms=settings.event_mark_ttl_ms,
            )
            self.metrics = MemoryMetricsStore()
        else:
            self.events = RedisEventLog(
                self.redis,
                settings.redis_namespace,
                retain=settings.event_history,
                ttl_s=settings.event_history_ttl_s,
                mark_ttl_ms=settings.event_mark_ttl_ms,
                per_message=settings.events_per_message,
            )
            self.metrics = RedisMetricsStore(self.redis, settings.redis_namespace, INSTANCE)
        self.broker = build_broker(settings)
        if run_worker:
            # Only a process that runs jobs needs the actors (the API just sends messages).
            # An in-process worker shares the in-memory log; on Redis it opens its own
            # (a Redis client belongs to one event loop, and the worker has its own).
            memory = self.events if isinstance(self.events, MemoryEventLog) else None
            install(self.broker, settings, memory)
        self.engine = create_engine(settings)
        self.draining = Draining()

    @asynccontextmanager
    async def run(self, app: Litestar) -> AsyncIterator[None]:
        self.draining.bind()
        if isinstance(self.events, MemoryEventLog):
            self.events.deliver = _deliver_on(asyncio.get_running_loop(), self.channels)
        worker = _start_worker(self.broker) if self.run_worker else None
        flusher = asyncio.create_task(flush_every(recorder, self.metrics))
        # The intake writes one group at a time: on PostgreSQL one connection, not pinged
        # before each group (a round trip); one the server closed is replaced at checkout.
        intake_engine = create_engine(self.settings, pool_size=1, pre_ping=False)
        sender = Sender(self.broker, self.redis)
        app.state.runtime = Runtime(
            settings=self.settings,
            engine=self.engine,
            events=self.events,
            sender=sender,
            jobs=JobService(
                self.engine,
                intake_engine,
                self.events,
                sender,
                default_max_attempts=self.settings.default_max_attempts,
                park_after_ms=self.settings.park_after_ms,
            ),
            metrics=self.metrics,
            draining=self.draining,
            redis=self.redis,
        )
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            await cancel_until_done([flusher])
            with suppress(Exception):
                await flush(recorder, self.metrics)
            if self.redis is not None:
                await self.redis.aclose()
            await intake_engine.dispose()


class LifespanAfterPlugins(InitPluginProtocol):
    """Registers a lifespan after those of the plugins listed before it."""

    def __init__(self, lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]) -> None:
        self.lifespan = lifespan

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.lifespan.append(self.lifespan)
        return app_config


# Open with FERRY_AUTH=on: the probes, the API's schema, the dashboard page (it asks
# for a key), and the key routes (their guard checks the admin key itself).
OPEN_PATHS = ["^/health", "^/schema", "^/$", "^/static/", "^/tenants/[^/]+/keys"]


def _authentication(settings: Settings) -> list[DefineMiddleware]:
    if not settings.auth_on:
        return []
    if not settings.ferry_admin_key:
        raise SystemExit("ferry: FERRY_AUTH=on needs FERRY_ADMIN_KEY (the key that manages keys)")
    return [DefineMiddleware(TenantKeyAuth, exclude=OPEN_PATHS)]


def _redis(settings: Settings, **options: Any) -> aioredis.Redis | None:
    return connect(settings.redis_url, **options) if settings.redis_url else None


def _drop(channel: str, data: bytes) -> None:
    """Delivery before the app has started: nobody can be subscribed yet."""


def _deliver_on(loop: asyncio.AbstractEventLoop, channels: ChannelsPlugin) -> Deliver:
    def deliver(channel: str, data: bytes) -> None:
        # Called from worker threads too: hand over to the app's event loop.
        loop.call_soon_threadsafe(channels.publish, data, channel)

    return deliver


def _start_worker(broker: dramatiq.Broker) -> dramatiq.Worker:
    # What `dramatiq` does in each worker process before it starts the worker
    # (TimeLimit, for one, starts its timer thread on this signal).
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=8, worker_timeout=100)
    worker.start()
    return worker


def _cors(settings: Settings) -> CORSConfig | None:
    origins = settings.cors_origin_list
    if not origins:
        return None
    # Credentials only ever go to an explicit list of origins, never to "*".
    return CORSConfig(allow_origins=origins, allow_credentials="*" not in origins)


def app_from_env() -> Any:
    """Entry point for `uvicorn --factory ferry.app:app_from_env`."""
    return create_app()
