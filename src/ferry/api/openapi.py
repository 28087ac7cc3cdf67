"""The OpenAPI document and its UI under `/schema`, with every asset served by Ferry.

Litestar's render plugins load their scripts, styles, fonts and favicon from public
CDNs by default, so on a machine without internet the docs page is blank. Here the
only UI is Swagger UI (at `/schema` and `/schema/swagger`), its files come from the
`swagger-ui-py` package under `/schema/assets/`, and the page's favicon is empty.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
# An empty icon: without it browsers ask for /favicon.ico, and the plugins' default is a CDN's.
NO_FAVICON = "<link rel='icon' href='data:,'>"


def swagger_ui_dist() -> Path:
    """The Swagger UI distribution shipped by `swagger-ui-py` (found without importing
    the package, whose import loads its framework adapters)."""
    spec = find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is missing: it ships the docs page's assets")
    return Path(spec.origin).parent / "static"


def openapi_config() -> OpenAPIConfig:
    """The app's `openapi_config`: the document at `/schema/openapi.json` (and `.yaml`),
    Swagger UI at `/schema` and `/schema/swagger`, its assets at `/schema/assets/`."""
    assets = create_static_files_router(
        path=ASSETS_PATH.removeprefix(SCHEMA_PATH),
        directories=[swagger_ui_dist()],
        name="openapi-assets",
        include_in_schema=False,
        # Same URL across upgrades of the package: revalidate (cheap, with ETag).
        cache_control=CacheControlHeader(no_cache=True),
    )
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        path="/swagger",
        favicon=NO_FAVICON,
    )
    return OpenAPIConfig(
        title="Ferry",
        version="0.1.0",
        description="Real-time multi-tenant background jobs.",
        path=SCHEMA_PATH,
        # The first plugin is also served at the root, `/schema`.
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router(SCHEMA_PATH, route_handlers=[assets], include_in_schema=False),
    )
