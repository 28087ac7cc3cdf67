"""One background thread per worker process, running an asyncio loop.

The worker's I/O that is not a job lives here: the group-commit writer, the
heartbeat that renews leases and spots cancelled jobs, and the recovery pass
(`ferry.worker.services` starts them). Dramatiq's worker threads hand work to
these services, never to the loop directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ferry.redis_client import cancel_until_done

log = logging.getLogger(__name__)
T = TypeVar("T")
Service = Callable[[], Awaitable[None]]


class BackgroundLoop:
    def __init__(self, name: str = "ferry-worker-io") -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._services: list[Service] = []
        self._on_stop: list[Callable[[], Awaitable[None]]] = []

    def add_service(self, service: Service) -> None:
        """Run `service` for as long as the loop runs (restarted if it crashes)."""
        self._services.append(service)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._on_stop.append(callback)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name=self.name, daemon=True
        )
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout: float = 30) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=timeout)
        self._thread = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        tasks = [asyncio.create_task(self._supervise(service)) for service in self._services]
        self._ready.set()
        await self._stopping.wait()
        # Services first, then what they use (engines, clients).
        await cancel_until_done(tasks)
        for callback in self._on_stop:
            try:
                await callback()
            except Exception:
                log.exception("%s: stop callback failed", self.name)

    async def _supervise(self, service: Service) -> None:
        while True:
            try:
                await service()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s crashed; restarting it", self.name, service)
                await asyncio.sleep(1)
