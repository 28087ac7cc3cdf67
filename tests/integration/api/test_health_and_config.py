"""Readiness with each dependency up or down, CORS, and a broker that refuses sends."""

from __future__ import annotations

import asyncio
import os
from contextlib import ExitStack
from typing import Any

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.app import create_app
from ferry.jobs.agreement import NO_WORKER
from ferry.migrate import MIGRATE, revisions, upgrade
from ferry.settings import Settings
from tests.support.jobs import Client, new_tenant, sleep_job
from tests.support.services import migrated_database, postgres_database

# Nothing listens on port 1 of this machine: a dependency that is down.
DOWN_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/ferry"
DOWN_REDIS = "redis://127.0.0.1:1/0"


async def test_health_is_ok(client: Client) -> None:
    response = await client.get("/health")
    assert (response.status_code, response.json()["status"]) == (200, "ok")
    assert response.json()["instance"].endswith(f":{os.getpid()}")  # this process answered


async def test_ready_checks_postgres_and_redis(client: Client) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    # This app has no worker: the job types check says so, and readiness does not fail
    # for it (tests/integration/jobs/test_type_agreement.py).
    assert response.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "redis": "ok", "jobTypes": NO_WORKER},
    }


async def test_ready_is_503_naming_postgres_when_it_is_down(settings: Settings) -> None:
    app = create_app(
        msgspec.structs.replace(settings, database_url=DOWN_POSTGRES), run_worker=False
    )
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health/ready")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["postgres"].startswith("down")
        assert checks["redis"] == "ok"
        # Routes that need the database answer 503 too, not 500 and not a hang.
        listing = await client.get("/jobs")
        assert listing.status_code == 503
        assert "database" in listing.json()["detail"]


async def test_ready_is_503_naming_redis_when_it_is_down(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, redis_url=DOWN_REDIS), run_worker=False)
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health/ready")
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["redis"].startswith("down")
        assert checks["postgres"] == "ok"


async def test_ready_is_503_while_the_database_lacks_this_codes_migrations(
    settings: Settings,
) -> None:
    """Every create of an API whose tables are missing fails: a load balancer must not
    send it traffic, and the operator must read why."""

    async def postgres_check(url: str) -> tuple[int, str]:
        app = create_app(msgspec.structs.replace(settings, database_url=url), run_worker=False)
        async with AsyncTestClient(app=app) as client:
            response = await client.get("/health/ready")
            return response.status_code, response.json()["checks"]["postgres"]

    stack = ExitStack()
    try:
        url = await asyncio.to_thread(stack.enter_context, postgres_database())
        assert await postgres_check(url) == (503, f"not migrated ({MIGRATE})")
        latest, before = revisions()[:2]
        await asyncio.to_thread(upgrade, url, before)
        assert await postgres_check(url) == (
            503,
            f"behind: at migration {before}, this Ferry needs {latest} ({MIGRATE})",
        )
        await asyncio.to_thread(upgrade, url)
        assert await postgres_check(url) == (200, "ok")
        # Migrated for the next version first (a rolling upgrade): this one stays ready.
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.execute("UPDATE alembic_version SET version_num = '9999_next'")
        finally:
            await conn.close()
        assert await postgres_check(url) == (200, "ok")
    finally:
        await asyncio.to_thread(stack.close)


async def test_ready_names_a_failing_version_read_down_not_unmigrated(settings: Settings) -> None:
    """Only a database without alembic's table is "not migrated": another error while
    reading it (rights, a broken connection) is the database being down."""
    stack = ExitStack()
    try:
        url = await asyncio.to_thread(stack.enter_context, migrated_database())
        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            await conn.execute(
                "ALTER TABLE alembic_version RENAME TO alembic_version_kept;"
                " CREATE VIEW alembic_version AS SELECT (1 / 0)::text AS version_num"
            )
        finally:
            await conn.close()
        app = create_app(msgspec.structs.replace(settings, database_url=url), run_worker=False)
        async with AsyncTestClient(app=app) as client:
            response = await client.get("/health/ready")
            assert response.status_code == 503
            assert "division by zero" in response.json()["checks"]["postgres"]
            assert response.json()["checks"]["postgres"].startswith("down: ")
    finally:
        await asyncio.to_thread(stack.close)


async def test_a_failed_enqueue_still_answers_201_and_keeps_the_job(settings: Settings) -> None:
    app = create_app(msgspec.structs.replace(settings, redis_url=DOWN_REDIS), run_worker=False)
    async with AsyncTestClient(app=app) as client:
        response = await client.post("/jobs", json=sleep_job(new_tenant()))
        assert response.status_code == 201
        job = (await client.get(f"/jobs/{response.json()['jobId']}")).json()
        # PENDING and due: the recovery pass will send it once Redis is back.
        assert job["status"] == "PENDING"
        assert job["nextRunAt"] is not None


async def test_cors_allows_only_the_configured_origins(
    settings: Settings, engine: AsyncEngine
) -> None:
    configured = msgspec.structs.replace(
        settings, cors_origins="https://app.example, http://localhost:5173"
    )
    async with AsyncTestClient(app=create_app(configured, run_worker=False)) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/jobs", headers={"Origin": "https://app.example", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert allowed.headers["access-control-allow-credentials"] == "true"
        other = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_cors_wildcard_never_allows_credentials(settings: Settings) -> None:
    configured = msgspec.structs.replace(settings, cors_origins="*")
    async with AsyncTestClient(app=create_app(configured, run_worker=False)) as client:
        response = await client.get("/health", headers={"Origin": "https://any.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


async def test_no_cors_headers_without_configuration(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_head_answers_like_get_without_a_body(client: Client) -> None:
    for path in ("/health", "/jobs", "/schema/openapi.json"):
        get, head = await client.get(path), await client.head(path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == get.headers["content-type"]


def _answers(schema: dict[str, Any], method: str, path: str) -> set[str]:
    return set(schema["paths"][path][method]["responses"])


async def test_the_document_lists_the_answers_of_the_configuration(settings: Settings) -> None:
    """401 and 403 only where FERRY_AUTH=on can give them; HEAD stays implied by GET.
    Apps of both configurations side by side in one process: each has its own."""
    secured = msgspec.structs.replace(settings, ferry_auth="on", ferry_admin_key="k-admin")
    async with (
        AsyncTestClient(app=create_app(secured, run_worker=False)) as on,
        AsyncTestClient(app=create_app(settings, run_worker=False)) as off,
    ):
        documents = {}
        for name, client in (("on", on), ("off", off)):
            response = await client.get(
                "/schema/openapi.json", headers={"Authorization": "Bearer k-admin"}
            )
            documents[name] = response.json()
        # A key without the right to act for another tenant: 403; a job of another tenant is 404.
        assert _answers(documents["on"], "post", "/jobs") == {
            "201", "400", "401", "403", "409", "413", "415",
        }  # fmt: skip
        assert _answers(documents["on"], "get", "/jobs/{job_id}") == {"200", "400", "401", "404"}
        assert _answers(documents["off"], "post", "/jobs") == {"201", "400", "409", "413", "415"}
        assert _answers(documents["off"], "get", "/jobs/{job_id}") == {"200", "400", "404"}
        assert _answers(documents["off"], "patch", "/jobs/{job_id}") == {
            "200", "400", "404", "409", "413", "415",
        }  # fmt: skip
        # The key routes check the admin key whatever FERRY_AUTH says.
        assert {"401", "403"} <= _answers(documents["off"], "post", "/tenants/{tenant_id}/keys")
        assert _answers(documents["off"], "get", "/health/ready") == {"200", "503"}
        error = documents["off"]["paths"]["/jobs"]["post"]["responses"]["415"]
        assert set(error["content"]["application/json"]["schema"]["required"]) == {
            "status_code", "detail",
        }  # fmt: skip
        for document in documents.values():
            assert not any("head" in item for item in document["paths"].values())


async def test_head_needs_a_key_like_get(settings: Settings) -> None:
    secured = msgspec.structs.replace(settings, ferry_auth="on", ferry_admin_key="k-admin")
    async with AsyncTestClient(app=create_app(secured, run_worker=False)) as client:
        assert (await client.head("/jobs")).status_code == 401
        assert (await client.head("/metrics")).status_code == 401
        authorized = {"Authorization": "Bearer k-admin"}
        assert (await client.head("/jobs", headers=authorized)).status_code == 200
        assert (await client.head("/health")).status_code == 200
