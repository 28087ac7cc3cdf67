"""Run Ferry's real commands as subprocesses: the API under uvicorn, `dramatiq actors`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from ferry.settings import Settings
from infra.stack import free_port as free_port  # re-exported for the tests
from infra.stack import wait_healthy, worker_command

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def ferry_env(**values: str) -> dict[str, str]:
    """This process's environment without any of Ferry's settings (a developer's
    REDIS_URL or SMTP_URL must not reach a test's processes), with `values`."""
    settings = set(Settings.__struct_fields__)
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in settings and not name.startswith(("STACK_", "WORKER_"))
    }
    env.update(values)
    return env


@contextmanager
def running(
    args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        # A session of its own: kill_hard() takes the process with its children.
        process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    kill_hard(process)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """kill -9 the process and everything it started, as a crashed machine would."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def api_process(
    env: dict[str, str], cwd: Path, log: Path, *, embedded: bool = False
) -> Iterator[str]:
    """`python -m ferry.serve` (what `just api` / `just dev` run); yields its base URL."""
    port = free_port()
    args = [sys.executable, "-m", "ferry.serve", *(["--embedded"] if embedded else [])]
    with running(args, {**env, "PORT": str(port)}, cwd, log) as process:
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process)
        except SystemExit as exc:  # the stack's words, and the API's log
            raise AssertionError(f"{exc}:\n{log.read_text()}") from None
        yield base


@contextmanager
def worker_process(
    env: dict[str, str], log: Path, *, threads: int = 8, processes: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """`dramatiq actors` (what `just worker` runs), in the directory of its log: what
    it writes there (an email outbox without SMTP, say) stays out of the repository."""
    with running(worker_command(threads, processes), env, log.parent, log) as process:
        yield process


def wait_for_status(base: str, job_id: str, statuses: set[str], timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
        if job["status"] in statuses:
            return job  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is still {job['status']} after {timeout}s")
        time.sleep(0.05)


def shared_env(database_url: str, namespace: str, **values: str) -> dict[str, str]:
    """The environment of Ferry processes sharing the test database and a Redis namespace."""
    from tests.support.services import TEST_REDIS_URL

    return ferry_env(
        DATABASE_URL=database_url, REDIS_URL=TEST_REDIS_URL, REDIS_NAMESPACE=namespace, **values
    )
