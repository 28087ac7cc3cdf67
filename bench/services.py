"""The servers a benchmark runs against: a database created for the run, a Redis namespace."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import redis

ADMIN_DATABASE_URL = os.environ.get(
    "FERRY_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("FERRY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(plain(ADMIN_DATABASE_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def bench_database() -> Iterator[str]:
    name = f"ferry_bench_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(
            f"bench: PostgreSQL is not reachable at {ADMIN_DATABASE_URL}: {exc}"
        ) from exc
    try:
        yield ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis_namespace() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"bench: Redis is not reachable at {REDIS_URL}: {exc}") from exc
    namespace = f"ferry-bench-{uuid.uuid4().hex[:10]}"
    try:
        yield namespace
    finally:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        client.close()


@contextmanager
def log_directory() -> Iterator[Path]:
    """A directory for the logs of a run's processes: removed after the run, kept (and
    named on stderr) if it failed."""
    logs = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    try:
        yield logs
    except BaseException:
        print(f"bench: the processes' logs are kept in {logs}", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(logs, ignore_errors=True)
