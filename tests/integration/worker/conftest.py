"""The database each statement test runs on (PostgreSQL, and SQLite: the embedded default),
and a status writer on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.events.log import Committed
from ferry.migrate import upgrade
from ferry.settings import Settings
from ferry.worker.loop import BackgroundLoop
from ferry.worker.writer import StatusWriter


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

    engines: list[AsyncEngine] = []

    def worker_engine() -> AsyncEngine:  # made on the writer's loop, which it belongs to
        if not engines:
            engines.append(create_engine(settings, pool_size=4, pre_ping=False))
        return engines[0]

    async def close() -> None:
        for made in engines:
            await made.dispose()

    writer = StatusWriter(loop, worker_engine, batch_size=100, tick_ms=200, on_commit=on_commit)
    loop.add_service(writer.run)
    loop.add_service(writer.publish_events)
    loop.on_stop(close)
    loop.start()
    yield writer, published
    loop.stop()
