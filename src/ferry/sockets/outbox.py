"""What waits to be written to a WebSocket that takes several messages a frame
(`?batch=true`), and the task that writes it.

The socket's feeds (one per tenant) and its replies put their messages here and
go on; one task writes them in order. Whatever arrived while a write went out
goes in the next write, all at once, as one frame of lines: a burst of events
costs one frame, not one each. At most `room` messages wait: a sender waits
beyond that, so a client that reads slowly holds its events back in its channel
backlog, where they are capped and read back (`ferry.events.feed`), not here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Write = Callable[[list[bytes]], Awaitable[None]]  # sends messages, in order

# Messages waiting for one socket before a sender waits.
ROOM = 128
# The most bytes a write takes at once (a message larger goes alone): clients cap
# the size of a frame they take (64 KiB in some libraries).
FRAME_BYTES = 64 * 1024
_LINE = b"\n"


def lines(messages: list[bytes]) -> bytes:
    """One frame of `messages`, one a line (an encoded message has no raw newline)."""
    return _LINE.join(messages)


class Outbox:
    def __init__(self, write: Write, room: int = ROOM) -> None:
        """`write`: sends a list of messages, in order; it is called with one list at
        a time."""
        self._write = write
        self._room = room
        self._waiting: list[bytes] = []
        self._some = asyncio.Event()  # something waits
        self._space = asyncio.Event()  # fewer than `room` wait
        self._space.set()
        self._failed: BaseException | None = None
        self._closed = False
        self._writer: asyncio.Task[None] | None = None

    async def put(self, message: bytes) -> None:
        """Queue `message` behind those before it; wait while `room` wait already.
        Raises ConnectionError once a write has failed: the socket is gone. Once
        closed, drops `message`."""
        while len(self._waiting) >= self._room and self._failed is None and not self._closed:
            self._space.clear()
            await self._space.wait()
        if self._failed is not None:
            raise ConnectionError("the socket's write failed") from self._failed
        if self._closed:
            return
        self._waiting.append(message)
        self._some.set()
        if self._writer is None:  # in a context of its own, not the first sender's
            self._writer = asyncio.create_task(self._run(), context=contextvars.Context())

    def drop(self) -> None:
        """Forget what waits (a cut client gets nothing more)."""
        self._waiting.clear()
        self._space.set()

    async def close(self) -> None:
        """Stop writing, a write that waits included; what still waits is dropped, and
        so is whatever is put from now on."""
        self._closed = True
        self.drop()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._some.wait()
            self._some.clear()
            taken = self._take()
            if self._waiting:
                self._some.set()  # more than a frame's bytes: the rest go next
            self._space.set()
            if not taken:
                continue  # dropped meanwhile
            try:
                await self._write(taken)
            except Exception as exc:
                log.info("a live socket's write failed (%s): it sends nothing more", exc)
                self._failed = exc
                self._space.set()  # wake the senders: they raise
                return

    def _take(self) -> list[bytes]:
        """The messages that wait, oldest first, up to FRAME_BYTES (at least one)."""
        size, count = 0, 0
        for message in self._waiting:
            size += len(message) + 1
            if count and size > FRAME_BYTES:
                break
            count += 1
        taken = self._waiting[:count]
        del self._waiting[:count]
        return taken
