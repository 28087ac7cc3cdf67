"""The dashboard: a static page and its ES modules, served by Ferry itself (no build step)."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.static_files import create_static_files_router

ASSETS = Path(__file__).resolve().parent.parent / "dashboard"
_INDEX = (ASSETS / "index.html").read_bytes()
# The page and its modules change with Ferry: browsers must ask again each time.
_NO_CACHE = {"Cache-Control": "no-cache"}


@get("/", include_in_schema=False)
async def dashboard() -> Response[bytes]:
    return Response(_INDEX, media_type=MediaType.HTML, headers=_NO_CACHE)


dashboard_assets = create_static_files_router(
    path="/static",
    directories=[ASSETS],
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
)
