"""Shutting down: open event streams end as soon as the server is asked to stop.

uvicorn closes WebSockets itself on SIGTERM, but waits for an SSE response to
finish, and an event stream never finishes: without this it would hold the
shutdown until the graceful timeout cuts it. `ferry.serve` calls `begin()` from
its signal handler; the SSE streams wait on `stopping` beside their events.
"""

from __future__ import annotations

import asyncio


class Draining:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping = asyncio.Event()

    def bind(self) -> None:
        """Called on the app's event loop at start-up."""
        self._loop = asyncio.get_running_loop()

    def begin(self) -> None:
        """Safe from a signal handler or another thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.stopping.set)
