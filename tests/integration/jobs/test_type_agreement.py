"""An API and `dramatiq actors` workers that disagree on the job types are told apart,
never silently: each worker process publishes its types' digests in Redis, and the
API's `GET /health/ready` compares them with its own (`jobTypes`), logging each
disagreement once. Real processes on PostgreSQL and Redis; the API is told
FERRY_JOBS=tests.support.user_jobs.jobs, a worker of another version
tests.support.user_jobs.variant (`resize` with another payload, `thumbnail` new, the
other types gone)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from ferry.app import create_app
from ferry.jobs.agreement import NO_WORKER
from ferry.settings import Settings
from tests.support.processes import api_process, ferry_env, shared_env, worker_process
from tests.support.services import migrated_database, redis_namespace
from tests.support.user_jobs import user_env

VARIANT = "tests.support.user_jobs.variant"
WORKER = r"[^ ,;]+:\d+"  # a worker process, host:pid


@dataclass(frozen=True)
class Api:
    base: str
    env: dict[str, str]
    home: Path
    log: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API process for the module; each test starts the workers it needs."""
    home = tmp_path_factory.mktemp("type_agreement")
    with migrated_database("ferry_type_agreement") as url, redis_namespace() as namespace:
        env = shared_env(url, namespace, LOG_LEVEL="INFO", HEARTBEAT_MS="200", **user_env())
        with api_process(env, home, home / "api.log") as base:
            yield Api(base, env, home, home / "api.log")


def ready(base: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{base}/health/ready", timeout=10)
    return response.status_code, response.json()["checks"]


def job_types_once(base: str, until: Callable[[str], bool], timeout: float = 30) -> str:
    """The `jobTypes` check, once it satisfies `until`."""
    deadline = time.monotonic() + timeout
    while True:
        check = ready(base)[1]["jobTypes"]
        if until(check):
            return check
        assert time.monotonic() < deadline, check
        time.sleep(0.1)


def warnings(log: Path) -> list[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line["level"] == "WARNING"]


def test_with_no_worker_yet_ready_says_so_and_stays_ready(api: Api) -> None:
    status, checks = ready(api.base)
    assert status == 200, checks  # the API takes jobs: they wait for a worker
    assert checks == {"postgres": "ok", "redis": "ok", "jobTypes": NO_WORKER}


def test_a_worker_of_the_same_types_agrees_and_withdraws_when_it_stops(api: Api) -> None:
    with worker_process(api.env, api.home / "same.log", threads=2):
        check = job_types_once(api.base, lambda check: check != NO_WORKER)
        assert check == "ok"
        assert ready(api.base) == (200, {"postgres": "ok", "redis": "ok", "jobTypes": "ok"})
    # Stopped: it took its entry with it (not left to expire).
    assert ready(api.base)[1]["jobTypes"] == NO_WORKER


def test_a_worker_of_another_version_is_named_type_by_type(api: Api) -> None:
    env = {**api.env, "FERRY_JOBS": VARIANT}
    with worker_process(env, api.home / "variant.log", threads=2):
        check = job_types_once(api.base, lambda check: check != NO_WORKER)
        for _ in range(3):  # probes again: the same report, logged once
            assert ready(api.base) == (200, {"postgres": "ok", "redis": "ok", "jobTypes": check})
    problems = check.split("; ")
    expected = [
        "bloat: no worker runs it",
        "flaky: no worker runs it",
        "report: no worker runs it",
        f"resize: payload schema differs between this API and worker {WORKER}",
        "whoami: no worker runs it",
        f"thumbnail: run by worker {WORKER}, unknown to this API",
    ]
    assert len(problems) == len(expected), check
    for problem, pattern in zip(problems, expected, strict=True):
        assert re.fullmatch(pattern, problem), check
    # The built-in types are the same code on both sides: they agree.
    assert not any(name in check for name in ("sleep", "email", "webhook", "data_processing"))
    said = warnings(api.log)
    for problem in problems:
        logged = [line for line in said if line.endswith(problem)]
        assert len(logged) == 1, said
        assert logged[0].startswith("the API and the workers disagree on the job types: ")


def test_the_embedded_default_agrees_with_itself(tmp_path: Path) -> None:
    """`just dev`: one process, one registry, no Redis to publish in."""
    env = ferry_env(**user_env(LOG_LEVEL="WARNING"))
    with api_process(env, tmp_path, tmp_path / "dev.log", embedded=True) as base:
        assert ready(base) == (200, {"sqlite": "ok", "broker": "in-process", "jobTypes": "ok"})


async def test_without_redis_the_check_cannot_tell(settings: Settings) -> None:
    down = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(down, run_worker=False)) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 503  # for Redis, not for the job types
    checks = response.json()["checks"]
    assert checks["redis"].startswith("down")
    assert checks["jobTypes"].startswith("unknown: "), checks
