"""The dashboard: a static page and its ES modules, served by Ferry itself (no build step).

The page and its assets go out with a Content-Security-Policy that lets the page run
only its own modules and styles and talk only to its own origin, and with headers
that forbid MIME sniffing, referrers and framing.
"""

from __future__ import annotations

import re
from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType, ScopeType
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
_INDEX = (ASSETS / "index.html").read_bytes()
# The page and its modules change with Ferry: browsers must ask again each time.
_NO_CACHE = {"Cache-Control": "no-cache"}

_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # data: for the page's empty favicon
    "connect-src 'self'{sockets}",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# A Host header that can stand in a source expression as it is (name or IP, port).
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(host: str | None) -> str:
    """The page's policy. `'self'` covers its own WebSocket in CSP 3 browsers; older
    ones need the ws:/wss: origin of the host the page was loaded from spelled out."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.fullmatch(host) else ""
    return "; ".join(_POLICY).format(sockets=sockets)


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware of the dashboard's routes: the headers above on every answer."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        headers = [
            (b"content-security-policy", content_security_policy(host).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),  # frame-ancestors, for browsers without CSP 2
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


@get("/", include_in_schema=False, middleware=[security_headers])
async def dashboard() -> Response[bytes]:
    return Response(_INDEX, media_type=MediaType.HTML, headers=_NO_CACHE)


dashboard_assets = create_static_files_router(
    path="/static",
    directories=[ASSETS],
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
    middleware=[security_headers],
)
