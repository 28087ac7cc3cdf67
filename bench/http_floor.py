"""Litestar under uvicorn alone, in a fresh process: `python -m bench.http_floor single N ...`.

The floor under Ferry's single creates: one uvicorn process (its defaults, which
Ferry's HTTP serving keeps: uvloop, httptools) serving a Litestar app whose only
route is a create that does nothing (`POST /jobs`: the JSON body decoded,
`201 {jobId, status}` answered), on the same load client and 32 requests in
flight as the end-to-end bench. No database, Redis, events or worker: what the
fixed web stack costs per request before Ferry does anything. Prints one JSON
line: creates/s, and the server's and the whole machine's CPU time per request
(ms). The database and namespace arguments are unused.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from typing import Any

import uvicorn
from litestar import Litestar, get, post

from bench.cpu import Spent
from bench.services import log_directory
from infra.stack import wait_healthy
from tests.support.processes import PROJECT_ROOT, free_port, running


@post("/jobs", status_code=201)
async def create(data: dict[str, Any]) -> dict[str, str]:
    return {"jobId": str(uuid.uuid4()), "status": "PENDING"}


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def serve(port: int) -> None:
    """The server process: uvicorn with proxy headers, as ferry.serve, and one route."""
    app = Litestar([create, health], openapi_config=None)
    listening = socket.create_server(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", proxy_headers=True)
    uvicorn.Server(config).run(sockets=[listening])


async def run(n: int) -> dict[str, Any]:
    # Here, not at the top: the server process does not import the bench's client.
    from bench.e2e import create_single

    port = free_port()
    args = [sys.executable, "-m", "bench.http_floor", "serve", str(port)]  # main() below
    with (
        log_directory() as logs,
        running(args, dict(os.environ), PROJECT_ROOT, logs / "server.log") as server,
    ):
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, server)
        spent = Spent(server=server.pid).start()
        start = time.time()
        created: dict[str, float] = {}
        await create_single(base, n, created, [])
        elapsed = time.time() - start
        spent.stop()
        assert len(created) == n, (len(created), n)
        return {"create_per_s": n / elapsed, **spent.ms_per(n, "request")}


def main() -> None:
    """`serve PORT`: the server; `single N ...`: the measurement."""
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
        return
    print(json.dumps(asyncio.run(run(int(sys.argv[2])))))


if __name__ == "__main__":
    main()
