"""The processes that run the fixture types, for the tests (not imported by the Ferry
processes that load the types: they import the package and its type modules only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import api_process, shared_env, worker_process
from tests.support.services import migrated_database, redis_namespace
from tests.support.user_jobs import USER_JOBS, user_env


@contextmanager
def user_stack(home: Path, jobs: str = USER_JOBS, *, threads: int, **values: str) -> Iterator[str]:
    """An API and a `dramatiq actors` worker told FERRY_JOBS=`jobs` (and `values`), sharing
    a database and a Redis namespace of their own, their logs in `home` (api.log,
    worker.log); yields the API's base URL."""
    with migrated_database("ferry_user_jobs") as url, redis_namespace() as namespace:
        env = shared_env(url, namespace, **user_env(FERRY_JOBS=jobs, **values))
        with (
            api_process(env, home, home / "api.log") as base,
            worker_process(env, home / "worker.log", threads=threads),
        ):
            yield base
