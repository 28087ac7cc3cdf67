"""Logs: JSON lines with the ids of the request, the job and its tenant."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from ferry.observability.logs import JsonFormatter, TextFormatter, configure
from ferry.settings import Settings
from tests.support.jobs import Client, new_tenant
from tests.support.processes import api_process, shared_env, wait_for_status, worker_process
from tests.support.services import redis_namespace


async def test_each_response_carries_a_request_id(client: Client) -> None:
    given = await client.get("/health", headers={"X-Request-ID": "from-nginx-123"})
    made = await client.get("/health")
    assert given.headers["x-request-id"] == "from-nginx-123"
    assert len(made.headers["x-request-id"]) == 32


def json_lines(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_processes_log_json_with_request_job_and_tenant_ids_and_refuse_private_webhooks(
    own_database: str, tmp_path: Path
) -> None:
    with redis_namespace() as namespace:
        env = shared_env(
            own_database,
            namespace,
            LOG_LEVEL="INFO",
        )  # LOG_FORMAT=auto: JSON, since this is not the embedded default
        with (
            api_process(env, tmp_path, tmp_path / "api.log") as base,
            worker_process(env, tmp_path / "worker.log"),
        ):
            tenant = new_tenant()
            job = {
                "tenantId": tenant,
                "type": "webhook",
                "payload": {"url": "http://localhost:1/"},
                "maxAttempts": 3,
            }
            response = httpx.post(f"{base}/jobs", json=job, headers={"X-Request-ID": "req-42"})
            job_id = response.json()["jobId"]
            failed = wait_for_status(base, job_id, {"FAILED"})
            time.sleep(0.2)
    access = [
        line for line in json_lines(tmp_path / "api.log") if line.get("request_id") == "req-42"
    ]
    assert (
        access
        and access[0]["logger"] == "uvicorn.access"
        and "POST /jobs" in str(access[0]["message"])
    )
    about_job = [
        line for line in json_lines(tmp_path / "worker.log") if line.get("job_id") == job_id
    ]
    assert all(line["tenant_id"] == tenant for line in about_job)
    failures = [line for line in about_job if line["level"] == "WARNING"]
    assert failures, (tmp_path / "worker.log").read_text()[-2000:]
    assert "loopback address: refused" in str(failures[0]["message"])
    # The SSRF guard (on by default) failed it at once: no retry.
    assert failed["attempts"] == 1 and "localhost resolves to 127.0.0.1" in failed["error"]


def test_the_embedded_default_logs_text(settings: Settings) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(Settings())  # embedded
        assert isinstance(root.handlers[0].formatter, TextFormatter)
        configure(settings)  # on Redis
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_keys_given_in_urls_never_reach_the_log(database_url: str, tmp_path: Path) -> None:
    """The dashboard's EventSource can only send its key as `?token=`, and uvicorn logs
    request lines whole: the value is redacted in every line, the access log included."""
    secrets = [f"fk_secret{n}-{new_tenant()}" for n in range(4)]
    tenant = new_tenant()
    with redis_namespace() as namespace:
        env = shared_env(database_url, namespace, LOG_LEVEL="INFO")
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            with httpx.Client(base_url=base, timeout=5) as client:
                params = {"tenantId": tenant, "token": secrets[0]}
                with client.stream("GET", "/events", params=params) as stream:
                    assert stream.status_code == 200
                listed = client.get(f"/jobs?tenantId={tenant}&token={secrets[1]}&limit=1")
                assert listed.status_code == 200
                # A URL in a query, percent-encoded, with the key inside.
                assert client.get(f"/health?next=%2Fws%3Ftoken%3D{secrets[2]}").status_code == 200
            ws_url = base.replace("http://", "ws://")
            with connect(f"{ws_url}/ws?token={secrets[3]}") as socket:
                assert json.loads(socket.recv())["type"] == "CONNECTED"
            time.sleep(0.3)  # the access lines of the requests above
    text = (tmp_path / "api.log").read_text()
    assert not [secret for secret in secrets if secret in text], text[-3000:]
    messages = [str(line["message"]) for line in json_lines(tmp_path / "api.log")]
    assert any(f"/events?tenantId={tenant}&token=[redacted]" in message for message in messages), (
        messages
    )
    assert any("/ws?token=[redacted]" in message for message in messages), messages
