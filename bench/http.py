"""A lean HTTP/1.1 load client for the end-to-end bench.

The client shares the machine's two cores with what it measures, so it should
cost as little as a C load generator: keep-alive connections, each an asyncio
protocol sending a pre-encoded request and parsing the answer with httptools
(uvicorn's parser), one request at a time per connection.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httptools
import msgspec


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc or ConnectionError("the server closed the connection"))

    # httptools' callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.answer is not None
        self.answer.set_result((self.parser.get_status_code(), b"".join(self.body)))
        self.body = []

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-encoded request (`post_request`); (status, body)."""
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(base: str) -> Connection:
    """A keep-alive connection to `base` (http://host:port)."""
    url = urlsplit(base)
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        Connection, url.hostname or "localhost", url.port or 80
    )
    return connection


def post_request(base: str, path: str, body: object) -> bytes:
    """The bytes of `POST path` with `body` as JSON."""
    payload = msgspec.json.encode(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {urlsplit(base).netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload
