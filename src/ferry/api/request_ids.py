"""Request ids: every request gets one, in its log records and in its response."""

from __future__ import annotations

import uuid_utils
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from ferry.observability.logs import request_id


def request_ids(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: every request gets an id (nginx's `X-Request-ID`, or a new one),
    in its log records and in the response's `X-Request-ID` header."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given[:100] if given else uuid_utils.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)

    return middleware
