"""The database each statement test runs on: PostgreSQL, and SQLite (the embedded default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.migrate import upgrade
from ferry.settings import Settings


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
