"""docs/jobs.md, run: its Python blocks become a package of job types (in a temporary
directory, named in FERRY_JOBS), and its curl examples are sent to the real app with a
worker inside it (the embedded default, as `just dev` runs it), each answer compared
with the JSON the page shows; its start errors are provoked and compared; and the
`just api` + `just worker` way runs the same package in real processes."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from ferry.app import create_app
from ferry.jobs import registry
from ferry.migrate import upgrade
from ferry.settings import Settings
from tests.support.jobs import TERMINAL, Client
from tests.support.processes import (
    PROJECT_ROOT,
    api_process,
    shared_env,
    wait_for_status,
    worker_process,
)

PAGE = PROJECT_ROOT / "docs" / "jobs.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FILE_NAME = re.compile(r"^# (\w+(?:/\w+)*\.py)\n")
# Fields whose values differ on each run: only their presence is compared.
VOLATILE = {"id", "jobId", "createdAt", "updatedAt", "startedAt", "finishedAt"}


@dataclass(frozen=True)
class Block:
    lang: str
    text: str


def blocks() -> list[Block]:
    return [Block(lang, text) for lang, text in FENCE.findall(PAGE.read_text())]


def python_files() -> dict[str, str]:
    """The page's Python blocks by the file each names on its first line."""
    files: dict[str, str] = {}
    for block in blocks():
        if block.lang == "python":
            named = FILE_NAME.match(block.text)
            assert named, f"a python block without its file name:\n{block.text}"
            assert named[1] not in files, f"{named[1]} is shown twice"
            files[named[1]] = block.text
    return files


def modules() -> list[str]:
    return [name.removesuffix(".py").replace("/", ".") for name in python_files()]


@dataclass(frozen=True)
class Curl:
    method: str
    path: str
    body: Any
    answer: Any  # the JSON block that follows, if any


def curls() -> list[Curl]:
    """The page's curl commands in order, each with the answer shown after it."""
    found: list[Curl] = []
    page = blocks()
    for index, block in enumerate(page):
        if block.lang != "sh" or not block.text.startswith("curl "):
            continue
        words = shlex.split(block.text.replace("\\\n", " "), comments=True)
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        url = next(word for word in words if word.startswith("localhost:8000/"))
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        follows = page[index + 1] if index + 1 < len(page) else None
        answer = json.loads(follows.text) if follows and follows.lang == "json" else None
        found.append(Curl(method, url.removeprefix("localhost:8000"), body, answer))
    return found


def assert_shown(shown: Any, real: Any, where: str) -> None:
    """`real` is what the page shows, but for the values of VOLATILE fields."""
    if isinstance(shown, dict):
        assert isinstance(real, dict), f"{where}: {real!r}"
        assert set(shown) == set(real), f"{where}: fields {sorted(shown)} != {sorted(real)}"
        for key, value in shown.items():
            if key in VOLATILE:
                assert isinstance(real[key], str) and real[key], f"{where}.{key}: {real[key]!r}"
            else:
                assert_shown(value, real[key], f"{where}.{key}")
    elif isinstance(shown, list) and shown and all(isinstance(s, dict) for s in shown):
        assert isinstance(real, list), f"{where}: {real!r}"
        if all("name" in s for s in shown):  # a listing of which the page shows a part
            by_name = {item["name"]: item for item in real}
            for item in shown:
                assert item["name"] in by_name, f"{where}: no {item['name']} in {sorted(by_name)}"
                assert_shown(item, by_name[item["name"]], f"{where}[{item['name']}]")
        else:
            assert len(shown) == len(real), f"{where}: {real!r}"
            for i, (s, r) in enumerate(zip(shown, real, strict=True)):
                assert_shown(s, r, f"{where}[{i}]")
    else:
        assert shown == real, f"{where}: the page shows {shown!r}, the app answers {real!r}"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The page's modules written under a temporary directory on sys.path; the
    registry and sys.modules are as they were afterwards."""
    root = tmp_path_factory.mktemp("docs-jobs")
    for name, text in python_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    # The built-in types first: restored without them, a registry that had not loaded
    # them yet would stay empty (their modules, imported here, register only once).
    saved = dict(registry.load(()))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        registry.REGISTRY.clear()
        registry.REGISTRY.update(saved)
        tops = {module.split(".")[0] for module in modules()}
        for loaded in [m for m in sys.modules if m.split(".")[0] in tops]:
            del sys.modules[loaded]


@pytest.fixture(scope="module")
def embedded(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """`just dev`'s settings with the page's FERRY_JOBS: SQLite (migrated), no Redis."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('docs-jobs-db') / 'ferry.db'}"
    upgrade(url)
    return Settings(database_url=url, ferry_jobs=",".join(modules()))


@pytest.fixture(scope="module")
async def dev(embedded: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(embedded, run_worker=True)) as client:
        yield client


async def terminal(client: Client, path: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = (await client.get(path)).json()
        if job["status"] in TERMINAL:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} is still {job['status']}")


async def test_every_curl_example_answers_what_the_page_shows(dev: Client) -> None:
    ran: set[str] = set()
    job_id = None
    for curl in curls():
        path = curl.path.replace("<jobId>", str(job_id))
        if curl.method == "GET" and path.startswith("/jobs/"):
            if "wait=" in path:  # one request, answered once the job has ended
                real: Any = (await dev.get(path, timeout=30)).json()
            else:
                real = await terminal(dev, path)
            ran.add(real["type"])
        else:
            response = await dev.request(curl.method, path, json=curl.body)
            assert response.status_code < 500, response.text
            real = response.json()
            if response.status_code == 201:
                job_id = real["jobId"]
        assert curl.answer is not None, f"{curl.method} {curl.path}: no answer shown"
        assert_shown(curl.answer, real, f"{curl.method} {curl.path}")
    # A job of each type the page defines ran to the result it shows.
    assert ran == {name for name, t in registry.REGISTRY.items() if t.run.__module__ in modules()}


async def test_a_permanent_error_fails_at_once(dev: Client) -> None:
    body = {"tenantId": "tenant-1", "type": "resize", "payload": {"url": "u", "width": 20_000}}
    created = await dev.post("/jobs", json=body)
    job = await terminal(dev, f"/jobs/{created.json()['jobId']}")
    assert (job["status"], job["attempts"], job["maxAttempts"]) == ("FAILED", 1, 3)
    assert f"`{job['error']}`" in PAGE.read_text()


async def test_a_retry_waits_the_delay_it_asks_for(dev: Client) -> None:
    body = {"tenantId": "tenant-1", "type": "crm_sync", "payload": {}}
    created = await dev.post("/jobs", json=body)
    job_id = created.json()["jobId"]
    pending = await terminal_or_retried(dev, job_id)
    assert pending["error"] == "Retry: the CRM is busy"
    assert "`Retry: <reason>`" in PAGE.read_text()
    job = await terminal(dev, f"/jobs/{job_id}")
    waited = _at(job["startedAt"]) - _at(job["createdAt"])
    assert job["status"] == "COMPLETED" and waited.total_seconds() >= 1.0


async def terminal_or_retried(client: Client, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if job["attempts"] == 1 and job["status"] == "PENDING":
            return job
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} was not retried")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_struct_ignores_unknown_fields_unless_it_forbids_them(dev: Client) -> None:
    payload = {"url": "u", "width": 10, "height": 10}
    created = await dev.post("/jobs", json={"tenantId": "t", "type": "resize", "payload": payload})
    assert created.status_code == 201, created.text


async def test_the_schema_documents_the_types(dev: Client) -> None:
    schemas = (await dev.get("/schema/openapi.json")).json()["components"]["schemas"]
    text = PAGE.read_text()
    for shown in re.findall(r"`(New\w+Job)`", text):
        assert shown in schemas, shown
    assert "NewCrmSyncJob" in schemas


def test_the_start_errors_are_the_pages(embedded: Settings, package: Path) -> None:
    shown = [b.text.strip() for b in blocks() if b.lang == "text"]
    assert len(shown) == 2
    missing, twice = shown
    before = dict(registry.REGISTRY)
    with pytest.raises(SystemExit) as failed:
        create_app(Settings(database_url=embedded.database_url, ferry_jobs="myapp.jobz"))
    assert str(failed.value) == missing
    # Another module of the package registers a `resize` of its own.
    (package / "myapp" / "images.py").write_text(
        'from ferry import job\n\n\n@job("resize")\ndef resize(payload: dict) -> None:\n    pass\n'
    )
    try:
        with pytest.raises(SystemExit) as failed:
            create_app(
                Settings(database_url=embedded.database_url, ferry_jobs="myapp.jobs,myapp.images")
            )
        assert str(failed.value) == twice
    finally:
        (package / "myapp" / "images.py").unlink()
        sys.modules.pop("myapp.images", None)
    assert before == registry.REGISTRY


def test_the_commands_name_real_recipes_and_settings() -> None:
    recipes = set(
        re.findall(r"^(\w+)\s*(?:\*\w+)?:", (PROJECT_ROOT / "justfile").read_text(), re.M)
    )
    fields = {name.upper() for name in Settings.__struct_fields__} | {"PYTHONPATH"}
    commands = [b.text for b in blocks() if b.lang == "sh" and not b.text.startswith("curl ")]
    assert commands
    for text in commands:
        for recipe in re.findall(r"\bjust (\w+)", text):
            assert recipe in recipes, recipe
        for variable, value in re.findall(r"\b([A-Z_]+)=(\S+)", text):
            assert variable in fields, variable
            if variable == "FERRY_JOBS":
                assert value.split(",") == modules()


def test_api_and_worker_processes_run_the_types(
    package: Path, own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    """`just api` and `just worker` (`python -m ferry.serve`, `dramatiq actors`), both
    given FERRY_JOBS and the package on PYTHONPATH, on PostgreSQL and Redis."""
    env = shared_env(
        own_database, own_namespace, FERRY_JOBS=",".join(modules()), PYTHONPATH=str(package)
    )
    with (
        api_process(env, PROJECT_ROOT, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log"),
    ):
        ids = {}
        for curl in curls():
            if curl.method == "POST" and curl.body and curl.answer.get("status") == "PENDING":
                response = httpx.post(f"{base}/jobs", json=curl.body, timeout=5)
                assert response.status_code == 201, response.text
                ids[curl.body["type"]] = response.json()["jobId"]
        assert set(ids) == {"resize", "report", "crm_sync"}
        results = {
            kind: wait_for_status(base, job_id, TERMINAL)["result"] for kind, job_id in ids.items()
        }
        assert results == {
            "resize": {"width": 800},
            "report": {"rows": 3, "total": 12},
            "crm_sync": {"attempt": 2},
        }
