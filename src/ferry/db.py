"""Database engines: one per event loop, PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ferry.settings import Settings


def create_engine(
    settings: Settings, *, pool_size: int | None = None, pre_ping: bool = True
) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=pool_size or settings.db_pool_size,
        pool_pre_ping=pre_ping,
        # Fail fast instead of hanging when PostgreSQL is unreachable.
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers
    # wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
