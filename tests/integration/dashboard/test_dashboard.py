"""The dashboard in a real browser (Debian's Chromium through Playwright), against an
API process and a worker process on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
import operator
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import (
    APIResponse,
    Browser,
    ConsoleMessage,
    Page,
    Route,
    WebSocketRoute,
    expect,
)

from tests.support.jobs import new_tenant, sleep_job
from tests.support.live import LIVE_SOCKET
from tests.support.processes import api_process, shared_env, worker_process
from tests.support.servers import Hooks, webhook_server
from tests.support.services import redis_namespace
from tests.support.user_jobs import user_env

WAIT_MS = 20_000


@dataclass
class Ferry:
    base: str
    database_url: str
    hooks: Hooks
    env: dict[str, str]
    logs: Path


@pytest.fixture(scope="module")
def ferry(module_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    logs = tmp_path_factory.mktemp("dashboard")
    with redis_namespace() as namespace, webhook_server() as hooks:
        env = shared_env(
            module_database,
            namespace,
            WEBHOOK_ALLOW_PRIVATE="true",  # the test's webhook server is on loopback
            LOG_LEVEL="WARNING",
            **user_env(),  # a team's own job types too: the form offers them
        )
        with (
            api_process(env, logs, logs / "api.log") as base,
            worker_process(env, logs / "worker.log"),
        ):
            yield Ferry(base, module_database, hooks, env, logs)


# Every Content-Security-Policy violation in the page, as a console error the test sees.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`securitypolicyviolation: ${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    """What the page's policy refused (Chromium's own report and the DOM event)."""
    return []


@pytest.fixture
async def page(browser: Browser, csp_violations: list[str]) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    await context.add_init_script(REPORT_VIOLATIONS)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and (
            "securitypolicyviolation" in message.text or "Content Security Policy" in message.text
        ):
            csp_violations.append(message.text)

    opened.on("console", on_console)
    yield opened
    await context.close()
    assert not errors, f"errors in the page: {errors}"
    assert not csp_violations, f"refused by the page's Content-Security-Policy: {csp_violations}"


async def open_dashboard(page: Page, ferry: Ferry, tenant: str, transport: str) -> None:
    await page.goto(f"{ferry.base}/?tenant={tenant}")
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        f"connected via {transport}", timeout=WAIT_MS
    )


async def create_from_form(page: Page, job_type: str, payload: str) -> None:
    await page.get_by_test_id("job-type-select").select_option(job_type)
    await page.locator("#payload").fill(payload)
    await page.get_by_test_id("create-job-submit").click()


async def watch_a_new_job_complete(page: Page, ferry: Ferry, transport: str, shot: Path) -> None:
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, transport)
    await page.evaluate("window.notReloaded = true")
    await create_from_form(page, "sleep", '{"delayMs": 300}')
    row = page.get_by_test_id("job-row")
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    # RUNNING, then COMPLETED, pushed by the server: the page is never reloaded.
    await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    assert await page.evaluate("window.notReloaded") is True
    await expect(page.get_by_test_id("stats").locator('[data-stat="completed"]')).to_have_text("1")
    statuses = await page.get_by_test_id("update").all_text_contents()
    assert [line.split()[-3 if "attempt" in line else -1] for line in reversed(statuses)] == [
        "PENDING", "RUNNING", "COMPLETED",
    ]  # fmt: skip
    await page.screenshot(path=shot, full_page=True)


async def test_the_form_offers_the_registered_types_with_a_template_from_their_schema(
    page: Page, ferry: Ferry
) -> None:
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    select = page.get_by_test_id("job-type-select")
    await expect(select.locator("option[value=resize]")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.get_by_test_id("type-filter").locator("option[value=resize]")).to_have_count(
        1
    )
    await select.select_option("resize")
    # Every field of the payload: its default, or an empty value of its type.
    template = json.loads(await page.locator("#payload").input_value())
    assert template == {"url": "", "width": 0, "keepRatio": True}
    await create_from_form(page, "resize", '{"url": "https://x.test/a.png", "width": 64}')
    row = page.get_by_test_id("job-row")
    await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)


async def test_a_job_created_in_the_form_turns_completed_live_over_websocket(
    page: Page, ferry: Ferry, tmp_path: Path
) -> None:
    await watch_a_new_job_complete(page, ferry, "WebSocket", tmp_path / "dashboard-websocket.png")
    print(f"screenshot: {tmp_path / 'dashboard-websocket.png'}")


async def test_the_page_takes_several_events_a_frame(page: Page, ferry: Ferry) -> None:
    """The dashboard's socket asks for batch frames (`/ws?batch=true`): a batch of jobs
    arrives as frames of several events, and every job turns COMPLETED on the page."""
    frames: list[str] = []
    page.on(
        "websocket",
        lambda socket: socket.on("framereceived", lambda payload: frames.append(str(payload))),
    )
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        jobs = {"jobs": [sleep_job(tenant) for _ in range(20)]}
        assert (await client.post("/jobs/batch", json=jobs)).status_code == 201
    completed = page.get_by_test_id("job-status").filter(has_text="COMPLETED")
    await expect(completed).to_have_count(20, timeout=WAIT_MS)
    messages = [json.loads(line) for frame in frames for line in frame.split("\n")]
    updates = [message for message in messages if message["type"] == "JOB_UPDATE"]
    assert [update["seq"] for update in updates] == list(range(1, 61))
    assert max(frame.count("\n") for frame in frames) > 0, "no frame held several events"


async def test_with_websocket_blocked_it_falls_back_to_sse(
    page: Page, ferry: Ferry, tmp_path: Path
) -> None:
    async def refuse(route: WebSocketRoute) -> None:
        await route.close(code=1008, reason="blocked")  # as a proxy that refuses it would

    await page.route_web_socket(LIVE_SOCKET, refuse)
    await watch_a_new_job_complete(page, ferry, "SSE", tmp_path / "dashboard-sse.png")


async def test_validation_errors_are_shown_in_the_form(page: Page, ferry: Ferry) -> None:
    await open_dashboard(page, ferry, new_tenant(), "WebSocket")
    error = page.get_by_test_id("create-error")
    await create_from_form(page, "webhook", '{"url": "not a url"}')
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("payload.url")
    await create_from_form(page, "sleep", '{"delayMs": ')
    await expect(error).to_contain_text("not valid JSON")
    await create_from_form(page, "sleep", '{"delayMs": 10}')
    await expect(error).to_be_hidden()
    await expect(page.get_by_test_id("job-row")).to_have_count(1, timeout=WAIT_MS)


async def test_a_failed_job_is_retried_from_the_ui(page: Page, ferry: Ferry) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    url = f"{ferry.hooks.base}/flaky/{key}?fail=1"  # fails once, then succeeds
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        response = await client.post(
            "/jobs",
            json={"tenantId": tenant, "type": "webhook", "payload": {"url": url}, "maxAttempts": 1},
        )
        job_id = response.json()["jobId"]
        for _ in range(200):
            if (await client.get(f"/jobs/{job_id}")).json()["status"] == "FAILED":
                break
            await asyncio.sleep(0.05)
    await open_dashboard(page, ferry, tenant, "WebSocket")
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    await expect(row.get_by_test_id("job-status")).to_have_text("FAILED")
    await row.click()
    detail = page.get_by_test_id("job-detail")
    await expect(detail.locator('[data-field="error"]')).to_contain_text("503")
    await expect(page.get_by_test_id("job-cancel")).to_be_disabled()
    await page.get_by_test_id("job-retry").click()
    await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    await expect(detail.locator('[data-field="status"]')).to_have_text("COMPLETED")
    await expect(page.get_by_test_id("job-retry")).to_be_disabled()
    assert len(ferry.hooks.received(f"/flaky/{key}")) == 2


async def test_page_reads_answered_late_do_not_undo_live_updates(page: Page, ferry: Ferry) -> None:
    """A job's RUNNING and COMPLETED can arrive while a read of the page is on its way:
    that read's answer is older than they are. Here every read whose answer does not
    show the job COMPLETED is delivered after one that does."""
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        job_id = (await client.post("/jobs", json=sleep_job(tenant, 1000))).json()["jobId"]
    stale: list[tuple[Route, APIResponse]] = []

    async def read(route: Route) -> None:
        response = await route.fetch()  # the server's answer now
        jobs = {job["id"]: job["status"] for job in (await response.json())["jobs"]}
        if jobs.get(job_id) == "COMPLETED":
            await route.fulfill(response=response)
        else:  # delivered later
            stale.append((route, response))

    await page.route(re.compile(r"/jobs\?"), read)
    status = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]').get_by_test_id(
        "job-status"
    )
    await expect(status).to_have_text("COMPLETED", timeout=WAIT_MS)
    assert stale, "no read of the page answered before COMPLETED"
    for route, response in stale:
        async with page.expect_request_finished(partial(operator.eq, route.request)):
            await route.fulfill(response=response)
    await page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # let them apply
    await expect(status).to_have_text("COMPLETED")


async def test_a_tenant_with_100000_jobs_shows_one_page_at_a_time(page: Page, ferry: Ferry) -> None:
    tenant = new_tenant()
    conn = await asyncpg.connect(
        ferry.database_url.replace("postgresql+asyncpg://", "postgresql://")
    )
    try:
        await conn.execute(
            """INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                                 created_at, updated_at, next_run_at)
               SELECT gen_random_uuid(), $1, 'sleep', '{"delayMs": 0}', 'COMPLETED', 1, 5,
                      now() - make_interval(secs => n), now(), now()
               FROM generate_series(1, 100000) AS n""",
            tenant,
        )
    finally:
        await conn.close()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    await expect(page.get_by_test_id("page-info")).to_have_text("1\u201325 of 100,000")
    await expect(page.get_by_test_id("job-row")).to_have_count(25)
    await expect(page.get_by_test_id("stats").locator('[data-stat="total"]')).to_have_text(
        "100,000"
    )
    first_page = await page.get_by_test_id("job-row").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    await page.get_by_test_id("page-next").click()
    await expect(page.get_by_test_id("page-info")).to_have_text("26\u201350 of 100,000")
    await expect(page.get_by_test_id("job-row")).to_have_count(25)
    second_page = await page.get_by_test_id("job-row").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)"
    )
    assert not set(first_page) & set(second_page)
    # A filtered view takes in a live job that comes to match it (RUNNING for 5 s:
    # an idle worker picks a job up within 50 ms, too soon to catch it PENDING).
    await page.get_by_test_id("status-filter").select_option("RUNNING")
    await expect(page.get_by_test_id("job-row")).to_have_count(0)
    await create_from_form(page, "sleep", '{"delayMs": 5000}')
    await expect(page.get_by_test_id("job-row")).to_have_count(1, timeout=WAIT_MS)


async def test_after_the_websocket_drops_it_reconnects_and_catches_up(
    page: Page, ferry: Ferry
) -> None:
    sockets: list[WebSocketRoute] = []
    reconnect = asyncio.Event()

    async def through(route: WebSocketRoute) -> None:
        if sockets:  # the reconnect waits until the job below has run its course
            await reconnect.wait()
        route.connect_to_server()  # a real connection to Ferry, which the test can cut
        sockets.append(route)

    await page.route_web_socket(LIVE_SOCKET, through)
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    await sockets[-1].close(code=1001, reason="gone")  # as a restarting proxy would
    status = page.get_by_test_id("connection-status")
    await expect(status).to_have_text("reconnecting")
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        job_id = (await client.post("/jobs", json=sleep_job(tenant))).json()["jobId"]
        for _ in range(200):  # every event of this job is missed
            if (await client.get(f"/jobs/{job_id}")).json()["status"] == "COMPLETED":
                break
            await asyncio.sleep(0.05)
    reconnect.set()
    await expect(status).to_have_text("connected via WebSocket", timeout=WAIT_MS)
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    assert len(sockets) == 2


async def test_cancel_then_delete_from_the_ui(page: Page, ferry: Ferry) -> None:
    tenant = new_tenant()
    await open_dashboard(page, ferry, tenant, "WebSocket")
    await page.locator("#delay-ms").fill("60000")  # PENDING for a minute
    await create_from_form(page, "sleep", '{"delayMs": 0}')
    row = page.get_by_test_id("job-row")
    await expect(row.get_by_test_id("job-status")).to_have_text("PENDING", timeout=WAIT_MS)
    await row.click()
    await expect(page.get_by_test_id("job-retry")).to_be_disabled()
    await page.get_by_test_id("job-cancel").click()
    await expect(row.get_by_test_id("job-status")).to_have_text("CANCELLED")
    await expect(page.get_by_test_id("job-cancel")).to_be_disabled()
    await expect(page.get_by_test_id("job-retry")).to_be_enabled()
    await page.get_by_test_id("job-delete").click()
    await expect(page.get_by_test_id("job-row")).to_have_count(0)
    await expect(page.get_by_test_id("job-detail")).to_be_hidden()
    await expect(page.get_by_test_id("stats").locator('[data-stat="total"]')).to_have_text("0")


async def test_with_auth_on_the_page_asks_for_a_key(page: Page, ferry: Ferry) -> None:
    admin = "dashboard-admin-key"
    env = {**ferry.env, "FERRY_AUTH": "on", "FERRY_ADMIN_KEY": admin}
    with api_process(env, ferry.logs, ferry.logs / "auth-api.log") as base:
        tenant = new_tenant()
        async with httpx.AsyncClient(base_url=base) as client:
            created = await client.post(
                f"/tenants/{tenant}/keys", headers={"Authorization": f"Bearer {admin}"}
            )
        key = created.json()["key"]
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.on("websocket", lambda socket: urls.append(socket.url))
        await page.goto(f"{base}/?tenant={tenant}")
        key_input = page.get_by_test_id("api-key-input")
        await expect(key_input).to_be_visible()
        await expect(page.get_by_test_id("connection-status")).to_have_text("API key needed")
        await key_input.fill(key)
        await key_input.press("Enter")
        await expect(page.get_by_test_id("connection-status")).to_have_text(
            "connected via WebSocket", timeout=WAIT_MS
        )
        await create_from_form(page, "sleep", '{"delayMs": 10}')
        row = page.get_by_test_id("job-row")
        await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    # The WebSocket carried the key in its subprotocol header: no URL shows it.
    assert any(url.startswith(base.replace("http", "ws", 1) + "/ws") for url in urls), urls
    assert not [url for url in urls if key in url]


async def test_the_tenants_queue_shows_in_the_counters(page: Page, ferry: Ferry) -> None:
    tenant = new_tenant()
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        limits = await client.put(f"/tenants/{tenant}/limits", json={"maxRunning": 1})
        assert limits.status_code == 200
        # One runs (the cap), two wait in the tenant's queue for a slot.
        batch = await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant, 20_000)] * 3})
        try:
            await open_dashboard(page, ferry, tenant, "WebSocket")
            stats = page.get_by_test_id("stats")
            await expect(stats.locator('[data-stat="waiting"]')).to_have_text("2", timeout=WAIT_MS)
            await expect(stats.locator('[data-stat="oldest-wait"]')).to_have_text(re.compile(r"\d"))
        finally:  # not left running: the module's worker would wait for them when it stops
            for job_id in batch.json()["jobIds"]:
                await client.post(f"/jobs/{job_id}/cancel")


async def test_a_paused_tenant_shows_in_the_counters(page: Page, ferry: Ferry) -> None:
    tenant = new_tenant()
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        await open_dashboard(page, ferry, tenant, "WebSocket")
        stats = page.get_by_test_id("stats")
        await expect(stats.locator('[data-stat="total"]')).to_have_text("0", timeout=WAIT_MS)
        await expect(stats.locator('[data-stat="paused"]')).to_have_count(0)
        assert (await client.post(f"/tenants/{tenant}/pause", params={"type": "email"})).is_success
        await create_from_form(page, "sleep", '{"delayMs": 0}')  # the counters read again
        await expect(stats.locator('[data-stat="paused"]')).to_have_text("email", timeout=WAIT_MS)
        assert (await client.post(f"/tenants/{tenant}/pause")).is_success
        await create_from_form(page, "sleep", '{"delayMs": 0}')
        await expect(stats.locator('[data-stat="paused"]')).to_have_text(
            "all jobs", timeout=WAIT_MS
        )
        assert (await client.post(f"/tenants/{tenant}/resume")).is_success  # runs what it held


NO_TIME = "\u2013"  # what the schedules panel shows for a time there is not


async def test_the_tenants_schedules_show_their_next_and_last_runs(
    page: Page, ferry: Ferry
) -> None:
    tenant, other = new_tenant(), new_tenant()
    job = {"type": "sleep", "payload": {"delayMs": 0}}
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        made = [
            await client.post("/schedules", json={"tenantId": owner, "name": name, "cron": cron, "job": job})
            for owner, name, cron in (
                (tenant, "every-second", "* * * * * *"),
                (tenant, "nightly", "0 3 * * *"),
                (other, "not-mine", "* * * * *"),
            )
        ]  # fmt: skip
        assert [answer.status_code for answer in made] == [201, 201, 201]
        try:
            await open_dashboard(page, ferry, tenant, "WebSocket")
            rows = page.get_by_test_id("schedule-row")
            await expect(rows).to_have_count(2, timeout=WAIT_MS)
            every_second = rows.filter(has_text="every-second")
            await expect(every_second).to_contain_text("* * * * * *")
            # Fired by the worker: its last run shows once the panel reads it again.
            await expect(every_second.get_by_test_id("schedule-last")).not_to_have_text(
                NO_TIME, timeout=WAIT_MS
            )
            nightly = rows.filter(has_text="nightly")
            await expect(nightly.get_by_test_id("schedule-last")).to_have_text(NO_TIME)
            await expect(nightly.get_by_test_id("schedule-next")).not_to_have_text(NO_TIME)
            await client.post(f"/schedules/{made[1].json()['id']}/pause")
            await expect(nightly).to_contain_text("paused", timeout=WAIT_MS)
            await expect(nightly.get_by_test_id("schedule-next")).to_have_text(NO_TIME)
            await expect(page.get_by_test_id("schedules")).not_to_contain_text("not-mine")
        finally:  # the module's worker must not go on firing them
            for answer in made:
                await client.delete(f"/schedules/{answer.json()['id']}")


async def test_the_page_and_its_assets_carry_security_headers(ferry: Ferry) -> None:
    host = ferry.base.removeprefix("http://")
    async with httpx.AsyncClient(base_url=ferry.base) as client:
        for path in ("/", "/static/app.js", "/static/style.css"):
            response = await client.get(path)
            assert response.status_code == 200, path
            policy = {
                name: values
                for name, _, values in (
                    directive.strip().partition(" ")
                    for directive in response.headers["content-security-policy"].split(";")
                )
            }
            assert policy["default-src"] == "'self'"
            assert policy["script-src"] == "'self'"
            assert policy["style-src"] == "'self'"
            assert policy["connect-src"] == f"'self' ws://{host} wss://{host}"
            assert policy["frame-ancestors"] == "'none'"
            assert policy["base-uri"] == "'none'"
            assert policy["object-src"] == "'none'"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"


async def test_the_dashboard_works_under_its_policy_and_the_policy_is_in_force(
    page: Page, ferry: Ferry, tmp_path: Path, csp_violations: list[str]
) -> None:
    # The whole flow (page, modules, styles, REST, WebSocket) with no violation...
    await watch_a_new_job_complete(page, ferry, "WebSocket", tmp_path / "dashboard-csp.png")
    assert not csp_violations
    # ...while what the page does not need is refused: an injected inline script, and a
    # connection to another origin (loopback too: the browser refuses it before connecting).
    await page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.injected = true";
            document.head.append(script);
        }"""
    )
    fetched = await page.evaluate(
        "() => fetch('http://127.0.0.2:9/').then(() => 'fetched', (error) => error.name)"
    )
    assert fetched == "TypeError"
    assert await page.evaluate("() => window.injected") is None
    for _ in range(100):  # the reports reach the test as console events, shortly after
        if len(csp_violations) >= 2:
            break
        await asyncio.sleep(0.05)
    assert any("script-src" in violation for violation in csp_violations), csp_violations
    assert any("connect-src" in violation for violation in csp_violations), csp_violations
    csp_violations.clear()
