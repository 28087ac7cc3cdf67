"""`just api` and `just dev`: serve Ferry under uvicorn on HOST:PORT.

`python -m ferry.serve` serves the API as configured by the environment;
`python -m ferry.serve --embedded` first migrates the database (the SQLite file
of the embedded default unless DATABASE_URL says otherwise) and, with no
REDIS_URL, runs the worker in the same process.
"""

from __future__ import annotations

import argparse
import errno
import socket
from types import FrameType

import uvicorn

from ferry.api.draining import Draining
from ferry.app import create_app
from ferry.migrate import upgrade
from ferry.observability.logs import configure as configure_logging
from ferry.settings import load_settings

# Requests still running this long after SIGTERM are cut (streams end at once).
GRACEFUL_SHUTDOWN_S = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="migrate first (just dev)")
    args = parser.parse_args()
    settings = load_settings()
    configure_logging(settings)
    # Taken before anything else starts (the migration, a worker), and handed to uvicorn.
    listening = listen(settings.host, settings.port)
    if args.embedded:
        upgrade(settings.database_url)
        mode = "embedded: in-process broker" if settings.embedded else f"Redis {settings.redis_url}"
        print(f"ferry: http://{settings.host}:{settings.port}  ({mode}; docs at /schema)")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # ferry.observability.logs configured the loggers
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=True,
        # Until its buffers fill, nothing but a ping tells a WebSocket that stopped
        # reading from one that reads (and it costs the others what a reader costs).
        ws_ping_interval=settings.ws_ping_ms / 1000,
        ws_ping_timeout=settings.ws_ping_ms / 1000,
        # Events are small: compressing each one for each socket took a fifth of
        # the API's time under fan-out, and 48 KiB per socket (docs/performance.md).
        ws_per_message_deflate=False,
    )
    try:
        DrainingServer(config, app.state.draining).run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn stopped gracefully, then raised Ctrl-C again
        print("ferry: stopped")


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), family=_family(host), reuse_port=False)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise SystemExit(f"ferry: cannot listen on {host}:{port}: {exc}") from None
        raise SystemExit(
            f"ferry: {host}:{port} is in use (another Ferry?); "
            f"choose another port: PORT={port + 1} just dev"
        ) from None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class DrainingServer(uvicorn.Server):
    """uvicorn that tells the app when it is asked to stop: in-flight requests
    finish, WebSockets are closed by uvicorn (1012), event streams end at once."""

    def __init__(self, config: uvicorn.Config, draining: Draining) -> None:
        super().__init__(config)
        self.draining = draining

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.draining.begin()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    main()
