"""pgqueuer 1.6.0 draining the work of Ferry's batch bench, in a fresh process:
`python -m bench.peers BATCH_SIZE N ...`.

pgqueuer runs in an environment of its own (`uv run --isolated`), so its pins
never constrain Ferry's; nothing here imports it. On the run's database: its
schema by its CLI (`pgq install`, durable: every table logged), ONE worker by
its CLI (`pgq run bench.pgqueuer_app:create --batch-size B`), and its client
(bench/pgqueuer_app.py) enqueueing N no-op jobs with `Queries.enqueue` lists of
1,000. The worker first runs one warm-up job; the clock then runs from the
first enqueue's transaction to the last `successful` row of `pgqueuer_log`,
pgqueuer's own durable record (both timestamps PostgreSQL's `now()`), as
Ferry's batch run is timed from its first create to its last COMPLETED.
Prints one JSON line: jobs/s, and the CPU time per job (ms) of the worker and of
the whole machine (its client, PostgreSQL, this bench's polls) while the clock ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import asyncpg

from bench.cpu import Spent
from bench.services import plain

PROJECT_ROOT = Path(__file__).resolve().parents[1]

PGQUEUER = [
    "uv", "run", "--isolated", "--no-project", "--quiet",
    # `pgq run` crashes on typer 2, and on 0.29 (its --log-level parser returns a str)
    "--with", "pgqueuer[asyncpg]==1.6.0", "--with", "typer<0.29",
]  # fmt: skip


@contextmanager
def started(
    args: list[str], env: dict[str, str], *, piped: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """A process in a session of its own, its stdin and stdout piped or its output on
    our stderr; at the end its whole group (uv, the Python it spawned) gets SIGTERM,
    then SIGKILL."""
    process = subprocess.Popen(
        args, cwd=PROJECT_ROOT, env=env, text=True, start_new_session=True,
        stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
        stdout=subprocess.PIPE if piped else sys.stderr,
    )  # fmt: skip
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with suppress(ProcessLookupError):  # whatever is left of the group: uv or its Python
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


RECORD = (
    "SELECT count(*) FILTER (WHERE status = 'successful') AS done,"
    " extract(epoch FROM min(created) FILTER (WHERE status = 'queued')) AS first,"
    " extract(epoch FROM max(created) FILTER (WHERE status = 'successful')) AS last"
    " FROM pgqueuer_log WHERE entrypoint = 'noop'"
)  # pgqueuer's record of the run: jobs logged done, and the clock's two ends


async def run(
    batch_size: int, n: int, database_url: str, env: dict[str, str], singly: bool = False
) -> dict[str, Any]:
    worker_args = [*PGQUEUER, "pgq", "run", "bench.pgqueuer_app:create",
                   "--batch-size", str(batch_size), "--log-level", "WARNING"]  # fmt: skip
    client_args = [*PGQUEUER, "python", "-m", "bench.pgqueuer_app", str(n)]
    client_args += ["single"] if singly else []
    conn = await asyncpg.connect(plain(database_url))
    try:
        with started(worker_args, env) as worker, started(client_args, env, piped=True) as client:
            assert client.stdin is not None and client.stdout is not None
            ready = await asyncio.to_thread(client.stdout.readline)
            assert ready.strip() == "ready", f"pgqueuer's client: {ready!r}"
            spent = Spent(worker=worker.pid).start()
            client.stdin.write("go\n")
            client.stdin.flush()
            deadline = time.monotonic() + 600
            while (record := await conn.fetchrow(RECORD))["done"] < n:
                assert time.monotonic() < deadline, f"pgqueuer: {record} after 600 s"
                assert worker.poll() is None, "pgqueuer's worker exited"
                await asyncio.sleep(0.05)
            spent.stop()
            said = await asyncio.to_thread(client.stdout.read)
            assert await asyncio.to_thread(client.wait, 60) == 0
    finally:
        await conn.close()
    assert record["done"] == n, (record, n)
    elapsed = float(record["last"]) - float(record["first"])
    result = {"jobs_per_s": n / elapsed, **spent.ms_per(n)}
    if singly:  # the client's own clock of its enqueues
        result["create_per_s"] = n / float(said.split()[-1])
    return result


def main() -> None:
    """BATCH_SIZE is the worker's; `10-single`: batch 10, jobs enqueued one by one."""
    batch, n, _namespace, database_url = sys.argv[1:5]
    batch_size, _, mode = batch.partition("-")
    env = {**os.environ, "PGDSN": plain(database_url)}
    subprocess.run(
        [*PGQUEUER, "pgq", "install"], cwd=PROJECT_ROOT, env=env, check=True, stdout=sys.stderr
    )
    singly = mode == "single"
    print(json.dumps(asyncio.run(run(int(batch_size), int(n), database_url, env, singly))))


if __name__ == "__main__":
    main()
