"""`ctx.progress` end to end: a team's job types (tests.support.user_jobs.progress, named in
FERRY_JOBS) run by a real `dramatiq actors` worker on PostgreSQL and Redis report their
progress; subscribers get PROGRESS events over WebSocket and SSE, in order, with their
own seq, each before the job's end; the JOB_UPDATE seqs stay gap-free; the job's REST
`progress` shows the last report; the long poll does not answer on a PROGRESS; the
embedded default does the same; the dashboard shows it live.

A `steps` job waits at a gate after each report until the test has seen its event
(the gate is a file): every report is its own event, with no sleep to tune."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocketRoute, expect

from tests.support.jobs import new_tenant
from tests.support.live import LIVE_SOCKET, Socket, socket
from tests.support.processes import api_process, ferry_env
from tests.support.user_jobs import user_env
from tests.support.user_jobs.stack import user_stack

PROGRESS_JOBS = "tests.support.user_jobs.progress"
STEPS = [(0.25, "downloaded"), (0.5, "resized"), (0.75, "uploading")]
WAIT_S = 20


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API and a worker process sharing a database and a Redis namespace of the module."""
    home = tmp_path_factory.mktemp("progress")
    with user_stack(home, PROGRESS_JOBS, threads=4, LOG_LEVEL="WARNING") as api:
        yield api


async def create(base: str, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["jobId"])


async def get_job(base: str, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
    return job


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """The directory a `steps` job waits in for the file of its step."""
    (tmp_path / "gate").mkdir()
    return tmp_path / "gate"


def steps_job(tenant: str, job_type: str, gate: Path) -> dict[str, Any]:
    payload = {"steps": [list(step) for step in STEPS], "gate": str(gate)}
    return {"tenantId": tenant, "type": job_type, "payload": payload}


# -- the two transports, as a client sees them -------------------------------------------


class Frames:
    """An SSE stream read frame by frame, as sent (httpx-sse would report a frame without
    `id:` with the last id it saw)."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self.lines = lines

    async def next(self) -> dict[str, str]:
        """The next frame with an `event:` (comments and the `retry:` hint skipped)."""
        frame: dict[str, str] = {}
        async with asyncio.timeout(WAIT_S):
            async for line in self.lines:
                if not line:
                    if "event" in frame:
                        return frame
                    frame = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    assert name not in frame, (name, frame)
                    frame[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended: {frame}")


@asynccontextmanager
async def frames(base: str, tenant: str) -> AsyncIterator[Frames]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=30)) as client,
        client.stream("GET", "/events", params={"tenantId": tenant}) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"  # subscribed: what follows is live
        yield Frames(lines)


Ended = Callable[[dict[str, Any]], bool]


def kind(event: dict[str, Any]) -> str:
    return "PROGRESS" if event["type"] == "PROGRESS" else event["status"]


async def ws_until(ws: Socket, last: Ended) -> list[dict[str, Any]]:
    """The messages up to the first that is `last`."""
    received: list[dict[str, Any]] = []
    while not received or not last(received[-1]):
        received.append(await ws.receive(WAIT_S))
    return received


async def sse_until(sse: Frames, last: Ended) -> list[dict[str, str]]:
    received: list[dict[str, str]] = []
    while not received or not last(json.loads(received[-1]["data"])):
        received.append(await sse.next())
    return received


def is_progress(event: dict[str, Any]) -> bool:
    return bool(event["type"] == "PROGRESS")


def completed(event: dict[str, Any]) -> bool:
    return bool(event.get("status") == "COMPLETED")


async def follow_steps(base: str, job_type: str, gate: Path) -> tuple[str, list[Any], list[Any]]:
    """Run a `steps` job while a WebSocket and an event stream follow its tenant: each
    gate opens once both got that step's PROGRESS. The job id, and what each received."""
    tenant = new_tenant()
    async with socket(base) as ws, frames(base, tenant) as sse:
        await ws.subscribe(tenant)
        job_id = await create(base, steps_job(tenant, job_type, gate))
        over_ws: list[dict[str, Any]] = []
        over_sse: list[dict[str, str]] = []
        for step in range(1, len(STEPS) + 1):
            over_ws += await ws_until(ws, is_progress)
            over_sse += await sse_until(sse, is_progress)
            (gate / str(step)).touch()
        over_ws += await ws_until(ws, completed)
        over_sse += await sse_until(sse, completed)
    return job_id, over_ws, over_sse


def check_in_order(job_id: str, events: list[dict[str, Any]]) -> None:
    assert {event["jobId"] for event in events} == {job_id}
    assert [kind(event) for event in events] == [
        "PENDING", "RUNNING", "PROGRESS", "PROGRESS", "PROGRESS", "COMPLETED",
    ]  # fmt: skip
    progress = [event for event in events if event["type"] == "PROGRESS"]
    assert [(event["progress"], event["message"]) for event in progress] == STEPS
    # Their own seq, from 1 for a new tenant; each after the RUNNING (seq 2).
    assert [event["seq"] for event in progress] == [1, 2, 3]
    assert [event["after"] for event in progress] == [2, 2, 2]
    # The JOB_UPDATEs' seq has no gap: the PROGRESS events took none of it.
    assert [event["seq"] for event in events if event["type"] == "JOB_UPDATE"] == [1, 2, 3]


@pytest.mark.parametrize("job_type", ["steps", "async_steps"])
async def test_progress_events_arrive_in_order_before_the_end_over_both_transports(
    base: str, job_type: str, gate: Path
) -> None:
    job_id, over_ws, over_sse = await follow_steps(base, job_type, gate)
    check_in_order(job_id, over_ws)
    check_in_order(job_id, [json.loads(frame["data"]) for frame in over_sse])
    assert over_ws == [json.loads(frame["data"]) for frame in over_sse]  # the same events
    # SSE: a JOB_UPDATE's id is its seq; a PROGRESS has none (Last-Event-ID stays a
    # JOB_UPDATE seq, where a resume starts).
    for frame in over_sse:
        event = json.loads(frame["data"])
        assert frame["event"] == event["type"]
        if event["type"] == "PROGRESS":
            assert "id" not in frame, frame
        else:
            assert frame["id"] == str(event["seq"]), frame
    job = await get_job(base, job_id)
    assert (job["status"], job["result"]) == ("COMPLETED", {"steps": 3})
    assert (job["progress"], job["progressMessage"]) == (0.75, "uploading")


async def test_ten_thousand_reports_are_coalesced_and_the_last_is_kept(base: str) -> None:
    tenant = new_tenant()
    async with socket(base) as ws:
        await ws.subscribe(tenant)
        body = {"tenantId": tenant, "type": "chatty", "payload": {"reports": 10_000}}
        job_id = await create(base, body)
        events = await ws_until(ws, completed)
    progress = [event for event in events if event["type"] == "PROGRESS"]
    # Written at most every 100 ms and with the outcome: a handful, not 10,000.
    assert 1 <= len(progress) <= 100, len(progress)
    assert [event["seq"] for event in progress] == list(range(1, len(progress) + 1))
    fractions = [event["progress"] for event in progress]
    assert fractions == sorted(fractions)
    # The last report is stored with the outcome, and published before it.
    assert (progress[-1]["progress"], progress[-1]["message"]) == (1.0, "row 10000 of 10000")
    assert [kind(event) for event in events][-2:] == ["PROGRESS", "COMPLETED"]
    job = await get_job(base, job_id)
    assert (job["progress"], job["progressMessage"]) == (1.0, "row 10000 of 10000")


async def test_the_long_poll_answers_at_the_end_not_at_a_progress_event(
    base: str, gate: Path
) -> None:
    tenant = new_tenant()
    async with socket(base) as ws, httpx.AsyncClient(base_url=base, timeout=60) as client:
        await ws.subscribe(tenant)
        job_id = await create(base, steps_job(tenant, "steps", gate))
        await ws_until(ws, lambda event: event.get("status") == "RUNNING")
        waiting = asyncio.create_task(client.get(f"/jobs/{job_id}", params={"wait": 30}))
        for step in range(1, len(STEPS) + 1):
            await ws_until(ws, is_progress)
            await asyncio.sleep(0.2)  # the long poll heard it too
            assert not waiting.done(), waiting.result().text
            (gate / str(step)).touch()
        answer = await asyncio.wait_for(waiting, WAIT_S)
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert (job["status"], job["progress"], job["progressMessage"]) == (
        "COMPLETED", 0.75, "uploading",
    )  # fmt: skip


async def test_the_embedded_default_streams_progress_too(tmp_path: Path, gate: Path) -> None:
    """`just dev`: SQLite, the in-memory event log and an in-process worker."""
    env = ferry_env(**user_env(FERRY_JOBS=PROGRESS_JOBS, LOG_LEVEL="WARNING"))
    with api_process(env, tmp_path, tmp_path / "dev.log", embedded=True) as embedded:
        job_id, over_ws, over_sse = await follow_steps(embedded, "steps", gate)
        job = await get_job(embedded, job_id)
    check_in_order(job_id, over_ws)
    check_in_order(job_id, [json.loads(frame["data"]) for frame in over_sse])
    assert all("id" not in frame for frame in over_sse if frame["event"] == "PROGRESS")
    assert (job["status"], job["progress"], job["progressMessage"]) == (
        "COMPLETED", 0.75, "uploading",
    )  # fmt: skip


# -- the dashboard -------------------------------------------------------------------------


@dataclass
class Watched:
    page: Page
    errors: list[str]  # the page's errors, and what its Content-Security-Policy refused


@pytest.fixture
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            errors.append(message.text)

    page.on("console", on_console)
    yield Watched(page, errors)
    await context.close()
    assert not errors


@pytest.mark.parametrize("transport", ["WebSocket", "SSE"])
async def test_the_dashboard_shows_a_running_jobs_progress_live(
    base: str, watched: Watched, transport: str, gate: Path
) -> None:
    page, tenant = watched.page, new_tenant()
    if transport == "SSE":

        async def refuse(route: WebSocketRoute) -> None:
            await route.close(code=1008, reason="blocked")

        await page.route_web_socket(LIVE_SOCKET, refuse)
    await page.goto(f"{base}/?tenant={tenant}")
    status = page.get_by_test_id("connection-status")
    await expect(status).to_have_text(f"connected via {transport}", timeout=WAIT_S * 1000)
    await page.evaluate("window.notReloaded = true")
    job_id = await create(base, steps_job(tenant, "steps", gate))
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    progress = row.get_by_test_id("job-progress")
    await expect(progress).to_have_text("25% downloaded", timeout=WAIT_S * 1000)
    await row.click()
    detail = page.get_by_test_id("job-detail").locator('[data-field="progress"]')
    await expect(detail).to_have_text("25% downloaded", timeout=WAIT_S * 1000)
    for step, text in [(1, "50% resized"), (2, "75% uploading")]:
        (gate / str(step)).touch()
        await expect(progress).to_have_text(text, timeout=WAIT_S * 1000)
        await expect(detail).to_have_text(text)
    assert await progress.locator("progress").get_attribute("value") == "0.75"
    (gate / "3").touch()
    await expect(row.get_by_test_id("job-status")).to_have_text("COMPLETED", timeout=WAIT_S * 1000)
    await expect(progress).to_have_count(0)  # shown while it runs only
    assert await page.evaluate("window.notReloaded") is True
