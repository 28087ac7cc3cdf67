"""The alembic migrations run forwards and backwards on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ferry.db.engine import create_engine
from ferry.db.models import Job
from ferry.migrate import alembic_config, revisions, upgrade
from ferry.settings import Settings
from tests.support.services import postgres_database


def _schema(url: str) -> tuple[set[str], set[str]]:
    def read(conn: Connection) -> tuple[set[str], set[str]]:
        inspector = inspect(conn)
        if not inspector.has_table("jobs"):
            return set(), set()
        columns = {column["name"] for column in inspector.get_columns("jobs")}
        indexes = {index["name"] or "" for index in inspector.get_indexes("jobs")}
        return columns, indexes

    async def run() -> tuple[set[str], set[str]]:
        engine = create_engine(Settings(database_url=url), pool_size=1)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _round_trip(url: str) -> None:
    upgrade(url)
    columns, indexes = _schema(url)
    assert columns == {column.name for column in Job.__table__.columns}
    assert indexes >= {
        "ix_jobs_tenant_created",
        "ix_jobs_tenant_status_created",
        "ix_jobs_status_due",
    }
    command.downgrade(alembic_config(url), "base")
    assert _schema(url) == (set(), set())
    upgrade(url)
    assert _schema(url)[0] == columns


def test_migrations_on_postgres() -> None:
    with postgres_database("ferry_migrations") as url:
        _round_trip(url)


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite+aiosqlite:///{tmp_path / 'ferry.db'}")


@pytest.mark.parametrize(
    ("before", "target", "index"),
    [("0011", "0012", "ix_jobs_status_finished"), ("0008", "0009", "ix_jobs_parked_next_run")],
)
def test_a_concurrent_index_build_that_failed_is_taken_up_by_running_the_migration_again(
    before: str, target: str, index: str
) -> None:
    """PostgreSQL builds the indexes of `jobs` CONCURRENTLY (its writes go on meanwhile),
    outside the migration's transaction. A build that fails half-way leaves an invalid
    index, and what the migration committed before it: running the migration again must
    rebuild the index (a migration that merely found the name would keep it unused for
    ever) and take every step before it again without error."""
    with postgres_database("ferry_migrations") as url:
        upgrade(url, before)
        asyncio.run(_cancel_the_build(url, target, index))
        assert asyncio.run(_state(url, index)) == (before, False)  # invalid, not migrated
        upgrade(url)
        assert asyncio.run(_state(url, index)) == (revisions()[0], True)


async def _cancel_the_build(url: str, target: str, index: str) -> None:
    """Run the migration to `target` and cancel its build of `index` while the build waits
    for a transaction that began before it (as an operator's Ctrl-C, or a lost session)."""
    dsn = url.replace("+asyncpg", "")
    older, admin = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    older_tx = older.transaction(isolation="repeatable_read")
    try:
        await older_tx.start()
        await older.fetchval("SELECT 1")  # a snapshot the build must wait for
        migrating = asyncio.create_task(asyncio.to_thread(upgrade, url, target))
        builder = None
        deadline = time.monotonic() + 60
        while builder is None and not migrating.done() and time.monotonic() < deadline:
            builder = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE $1 AND wait_event_type = 'Lock'",
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} %",
            )
            await asyncio.sleep(0.05)
        if migrating.done():
            await migrating  # it failed before the build: its own error
        assert builder is not None, f"the build of {index} did not wait within 60 s"
        await admin.execute("SELECT pg_cancel_backend($1)", builder)
        with pytest.raises(DBAPIError, match="canceling statement"):
            await asyncio.wait_for(migrating, 60)
    finally:
        await older_tx.rollback()
        await older.close()
        await admin.close()


async def _state(url: str, index: str) -> tuple[str, bool]:
    """The database's migration, and whether `index` is valid."""
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        version = await conn.fetchval("SELECT version_num FROM alembic_version")
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", index
        )
        return version, valid
    finally:
        await conn.close()
