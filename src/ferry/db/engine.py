"""Database engines: one per event loop, PostgreSQL (asyncpg) or SQLite (aiosqlite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
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


# SQLSTATE classes of failures that another try may not meet: the connection
# (08), a transaction rolled back for a concurrent one (40), the server out of
# resources (53), shutting down or cancelling (57), a lock not available now.
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "55P03")


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached or could not answer now,
    as opposed to a statement it refused (for its data, say: that fails every time)."""
    if isinstance(exc, OSError | TimeoutError | PoolTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return (
        exc.connection_invalidated
        or isinstance(exc, OperationalError | InterfaceError)
        or exc.statement is None  # raised while connecting, before any statement
        or sqlstate.startswith(_TRANSIENT_SQLSTATES)
    )


_DATA_SQLSTATES = ("22", "23")  # data exception, integrity constraint violation


def refused_for_data(exc: BaseException) -> bool:
    """Whether the database refused what a statement carried (a NUL in a result, say),
    which it would refuse every time, as opposed to being unreachable or unable for now
    (a lost connection, a missing table before a migration, read-only after a failover),
    which is waited out."""
    if connection_lost(exc):
        return False
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        return sqlstate.startswith(_DATA_SQLSTATES) or isinstance(exc, DataError | IntegrityError)
    return True  # raised before the database saw it: encoding the statement's values


def skipping_insert(dialect: str) -> Any:
    """The dialect's `insert`, which takes ON CONFLICT DO NOTHING (PostgreSQL's or
    SQLite's; SQLAlchemy's generic one does not)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
