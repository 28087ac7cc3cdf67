"""The database each statement test runs on (PostgreSQL, and SQLite: the embedded default),
and a status writer on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.events.log import Committed
from ferry.jobs.registry import REGISTRY, job
from ferry.migrate import upgrade
from ferry.settings import Settings
from ferry.worker.loop import BackgroundLoop
from ferry.worker.writer import StatusWriter
from tests.support.writer import start_writer


@pytest.fixture(params=["postgresql", "sqlite"])
async def db(
    request: pytest.FixtureRequest, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        yield engine
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'ferry.db'}"
    await asyncio.to_thread(upgrade, url)  # alembic runs its own event loop
    sqlite = create_engine(Settings(database_url=url))
    yield sqlite
    await sqlite.dispose()


@pytest.fixture
def pg_writer(settings: Settings) -> Iterator[tuple[StatusWriter, list[Committed]]]:
    """A status writer on the test database, on a loop of its own (a tick lets 200 ms of
    requests gather), and the events it has handed on so far."""
    loop = BackgroundLoop("writer-test")
    published: list[Committed] = []

    async def on_commit(committed: list[Committed]) -> None:
        published.extend(committed)

    yield start_writer(loop, settings, on_commit, batch_size=100, tick_ms=200), published
    loop.stop()


@pytest.fixture
def sync_type() -> Iterator[str]:
    """A registered job type with a sync handler (claimed ahead), for the test only."""

    @job("worker_test_sync")
    def worker_test_sync(payload: dict[str, Any]) -> None: ...

    yield "worker_test_sync"
    REGISTRY.pop("worker_test_sync")
