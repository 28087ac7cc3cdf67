"""`just api` and `just dev`: serve Ferry under uvicorn on HOST:PORT.

`python -m ferry.serve` serves the API as configured by the environment;
`python -m ferry.serve --embedded` first migrates the database (the SQLite file
of the embedded default unless DATABASE_URL says otherwise) and, with no
REDIS_URL, runs the worker in the same process.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from ferry.app import create_app
from ferry.migrate import upgrade
from ferry.settings import load_settings

# An open SSE or WebSocket stream would otherwise hold a graceful shutdown forever.
GRACEFUL_SHUTDOWN_S = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="migrate first (just dev)")
    args = parser.parse_args()
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.embedded:
        upgrade(settings.database_url)
        mode = "embedded: in-process broker" if settings.embedded else f"Redis {settings.redis_url}"
        print(f"ferry: http://{settings.host}:{settings.port}  ({mode}; docs at /schema)")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
