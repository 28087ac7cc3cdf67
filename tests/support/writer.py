"""A status writer on a real database, on a background loop of its own (for tests of the
writer with PostgreSQL, without a worker process)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.settings import Settings
from ferry.worker.loop import BackgroundLoop
from ferry.worker.writer import OnCommit, StatusWriter


def start_writer(
    loop: BackgroundLoop, settings: Settings, on_commit: OnCommit, *, batch_size: int, tick_ms: int
) -> StatusWriter:
    """The writer and its publisher started on `loop`, on `settings`' database; its engine
    is made on the loop (it belongs to it) and disposed of when the loop stops."""
    engines: list[AsyncEngine] = []

    def engine() -> AsyncEngine:
        if not engines:
            engines.append(create_engine(settings, pool_size=4, pre_ping=False))
        return engines[0]

    async def close() -> None:
        for made in engines:
            await made.dispose()

    writer = StatusWriter(loop, engine, batch_size=batch_size, tick_ms=tick_ms, on_commit=on_commit)
    loop.add_service(writer.run)
    loop.add_service(writer.publish_events)
    loop.on_stop(close)
    loop.start()
    return writer
