"""The Litestar application factory: `ferry.app:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import dramatiq
import redis.asyncio as aioredis
from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig

from ferry.api.errors import EXCEPTION_HANDLERS, internal_error
from ferry.api.health import health, ready
from ferry.api.jobs import JobController
from ferry.broker import build_broker, install_broker
from ferry.db import create_engine
from ferry.dispatch import Dispatcher
from ferry.settings import Settings, load_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, run_worker: bool | None = None) -> Litestar:
    """Build the app. `run_worker` (default: on the embedded default only) runs a
    Dramatiq worker inside this process, on the same broker the API sends to."""
    settings = settings or load_settings()
    run_worker = settings.embedded if run_worker is None else run_worker
    broker = build_broker(settings)
    if run_worker:
        # Only a process that runs jobs needs the actors (the API just sends messages).
        install_broker(broker, settings)
    engine = create_engine(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        worker = _start_worker(broker) if run_worker else None
        redis_client = (
            aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
            if settings.redis_url
            else None
        )
        app.state.update(
            settings=settings, engine=engine, dispatcher=Dispatcher(broker), redis=redis_client
        )
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            if redis_client is not None:
                await redis_client.aclose()

    db_config = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        before_send_handler="autocommit",
    )
    return Litestar(
        route_handlers=[JobController, health, ready],
        plugins=[SQLAlchemyPlugin(config=db_config)],
        lifespan=[lifespan],
        cors_config=_cors(settings),
        exception_handlers={**EXCEPTION_HANDLERS, Exception: internal_error},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Ferry",
            version="0.1.0",
            description="Real-time multi-tenant background jobs.",
            path="/schema",
        ),
    )


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
