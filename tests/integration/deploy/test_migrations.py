"""The alembic migrations run forwards and backwards on PostgreSQL and on SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ferry.db.engine import create_engine
from ferry.db.models import Job
from ferry.migrate import alembic_config, upgrade
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
        "ix_jobs_status_next_run",
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


def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again() -> None:
    """PostgreSQL builds the indexes of `jobs` CONCURRENTLY (writes go on meanwhile); a
    build that failed half-way leaves an invalid index of the name, which a migration
    that merely found the name there would keep: unused by the planner for ever."""

    async def validity(url: str, sql: str | None = None) -> bool:
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            if sql:
                await conn.execute(sql)
            valid: bool = await conn.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass", INDEX
            )
            return valid
        finally:
            await conn.close()

    with postgres_database("ferry_migrations") as url:
        upgrade(url, "0011")
        # What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
        invalidate = (
            f"CREATE INDEX {INDEX} ON jobs (status, finished_at);"
            f" UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{INDEX}'::regclass"
        )
        assert asyncio.run(validity(url, invalidate)) is False
        upgrade(url)
        assert asyncio.run(validity(url)) is True


INDEX = "ix_jobs_status_finished"  # migration 0012's
