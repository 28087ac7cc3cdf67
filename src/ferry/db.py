"""Database engines: one per event loop, PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ferry.settings import Settings


def create_engine(
    settings: Settings, *, pool_size: int | None = None, pre_ping: bool = True
) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=pool_size or settings.db_pool_size,
        pool_pre_ping=pre_ping,
        # Fail fast instead of hanging when PostgreSQL is unreachable.
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    if not pre_ping:
        event.listen(engine.sync_engine, "checkout", _discard_closed)
    return engine


def _discard_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # Without a ping (a round trip per checkout): a connection the server closed
    # (a restart, a terminated backend) is known closed to asyncpg as soon as the
    # loop reads its end, and the pool replaces it instead of handing it out.
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers
    # wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
