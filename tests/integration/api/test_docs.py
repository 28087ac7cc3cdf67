"""The API docs (`/schema`, Swagger UI) render in Chromium with no network beyond loopback:
every script, style and icon they load is served by Ferry itself."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import uvicorn
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar
from playwright.async_api import Browser, Route, expect

from ferry.api.dependencies import DEPENDENCIES
from ferry.api.health import health
from ferry.api.jobs import JobController, with_request_types
from ferry.api.openapi import openapi_config
from ferry.jobs.registry import load
from ferry.service.schemas import request_types
from tests.support.processes import free_port

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def docs_app(database_url: str) -> Litestar:
    """Ferry's job routes under the OpenAPI configuration `ferry.app` uses. The docs read
    nothing from the database: the engine is never connected."""
    return Litestar(
        route_handlers=[with_request_types(JobController, request_types(load(()))), health],
        plugins=[SQLAlchemyPlugin(config=SQLAlchemyAsyncConfig(connection_string=database_url))],
        dependencies=DEPENDENCIES,  # by name; the docs never run a handler
        openapi_config=openapi_config(),
        logging_config=None,
    )


@pytest.fixture(scope="module")
def docs(database_url: str) -> Iterator[str]:
    """The app above under uvicorn on loopback; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(docs_app(database_url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.05)
        assert server.started, "the docs app did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_docs_render_operations_with_no_network_beyond_loopback(
    docs: str, browser: Browser, path: str
) -> None:
    context = await browser.new_context()
    blocked: list[str] = []
    errors: list[str] = []

    async def offline(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOOPBACK:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await context.route("**/*", offline)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(f"{docs}{path}")
        create = page.locator(".opblock-post").filter(
            has=page.locator('.opblock-summary-path[data-path="/jobs"]')
        )
        await expect(create).to_be_visible(timeout=20_000)
        await expect(create.locator(".opblock-summary-method")).to_have_text("POST")
        await expect(page.locator(".opblock-get").first).to_be_visible()
        # Open it: the request body's schema renders too.
        await create.locator(".opblock-summary").click()
        await expect(create.locator(".opblock-body")).to_contain_text("tenantId")
    finally:
        await context.close()
    assert not blocked, f"the docs asked for more than loopback: {blocked}"
    assert not errors, f"errors in the page: {errors}"
