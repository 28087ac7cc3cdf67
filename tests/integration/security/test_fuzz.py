"""Fuzzing the API from its own OpenAPI document (schemathesis): whatever the input,
the answer is never a server error, and it is one the document describes (status,
content type, body schema, headers). Then explicit hostile requests, each a 4xx that
names what was wrong. A real API process on PostgreSQL and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.live import socket
from tests.support.processes import api_process, shared_env
from tests.support.services import redis_namespace

EXAMPLES = 25  # per operation: bounded, so the suite stays quick
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def api_base(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("fuzz")
    with redis_namespace() as namespace:
        env = shared_env(
            database_url,
            namespace,
            LOG_LEVEL="WARNING",
        )
        with api_process(env, logs, logs / "api.log") as base:
            yield base


@pytest.fixture(scope="module")
def api_schema(api_base: str) -> BaseSchema:
    schema = schemathesis.openapi.from_url(f"{api_base}/schema/openapi.json")
    # The streams never end: fuzz everything else.
    return schema.exclude(path_regex="^/(events|ws)$")


def test_no_input_makes_a_server_error(api_schema: BaseSchema) -> None:
    # Operation by operation, with hypothesis driving schemathesis' strategies
    # (its pytest plugin does not run on this pytest).
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        operations.append(result.ok())
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples every run: a failure reproduces
            database=None,
        )
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=CHECKS, timeout=10)

        call()


# -- explicit cases ------------------------------------------------------------------

TENANT = "explicit-cases"  # every body below names it: none may create a job
JSON = {"Content-Type": "application/json"}
DEEP = b"[" * 10_000 + b"]" * 10_000
HUGE_SEQ = str(10**30)
WEBHOOK = b'{"tenantId":"%s","type":"webhook","payload":{"url":"http://hook.test","body":%s}}'
SLEEP = b'{"tenantId":"%s","type":"sleep","payload":{"delayMs":1}}' % TENANT.encode()
# Every route that reads a JSON body, with a valid body for it ({job}: a PENDING job).
JSON_ROUTES = {
    ("POST", "/jobs"): SLEEP,
    ("POST", "/jobs/batch"): b'{"jobs":[%s]}' % SLEEP,
    ("PATCH", "/jobs/{job}"): b'{"maxAttempts":2}',
    ("POST", "/jobs/retry"): b'{"tenantId":"%s"}' % TENANT.encode(),
    ("PUT", f"/tenants/{TENANT}/limits"): b'{"weight":1}',
}
NOT_JSON = {
    "text": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "xml": "application/xml",
    "none": None,
}


@dataclass(frozen=True)
class Bad:
    """A request and the error it must get: `where` is (source, key), key None when
    the error is about the body as a whole."""

    method: str
    path: str
    status: int
    where: tuple[str, str | None] | None
    body: bytes | None = None
    headers: dict[str, Any] = field(default_factory=lambda: dict(JSON))
    says: str = ""  # in the error's message


def _job(**fields: Any) -> bytes:
    return json.dumps({"tenantId": TENANT, **fields}).encode()


def _cases() -> Iterator[Any]:
    # Item 3: never a 500.
    webhook_deep = WEBHOOK % (TENANT.encode(), DEEP)
    deep_bodies = {
        ("POST", "/jobs"): webhook_deep,
        ("POST", "/jobs/batch"): b'{"jobs":[%s]}' % webhook_deep,
        ("PATCH", "/jobs/{job}"): b'{"payload":{"delayMs":1,"x":%s}}' % DEEP,
    }
    # Bytes that are not UTF-8 where each body has text.
    not_utf8 = {
        ("PATCH", "/jobs/{job}"): b'{"payload":{"delayMs":1,"x":"\xff\xfe"}}',
        ("PUT", f"/tenants/{TENANT}/limits"): b'{"\xff\xfe":1}',
    }
    for (method, path), valid in JSON_ROUTES.items():
        deep = deep_bodies.get((method, path), DEEP)
        yield pytest.param(Bad(method, path, 400, ("body", None), deep), id=f"deep {method} {path}")
        mangled = not_utf8.get((method, path), valid.replace(b'-cases"', b'-cases\xff"'))
        yield pytest.param(
            Bad(method, path, 400, ("body", None), mangled), id=f"not UTF-8 {method} {path}"
        )
    naive = b'{"tenantId":"%s","failedSince":"2026-01-01T00:00:00"}' % TENANT.encode()
    yield pytest.param(Bad("POST", "/jobs/retry", 400, ("body", "failedSince"), naive), id="naive")
    events = f"/events?tenantId={TENANT}"
    # "²" passes str.isdigit() (header bytes are read as Latin-1); so does its UTF-8 as "Â²".
    digits = {"superscript": "²".encode("latin-1"), "UTF-8 superscript": "²".encode()}
    for name, value in {**digits, "10^30": HUGE_SEQ.encode()}.items():
        header = {"Last-Event-ID": value}
        yield pytest.param(
            Bad("GET", events, 400, ("header", "Last-Event-ID"), headers=header),
            id=f"Last-Event-ID {name}",
        )
    yield pytest.param(
        Bad("GET", f"{events}&lastEventId={HUGE_SEQ}", 400, ("query", "lastEventId"), headers={}),
        id="lastEventId 10^30",
    )
    # Item 4: bodies must be JSON.
    for (method, path), valid in JSON_ROUTES.items():
        for name, content_type in NOT_JSON.items():
            headers = {"Content-Type": content_type} if content_type else {}
            yield pytest.param(
                Bad(method, path, 415, None, valid, headers, says="application/json"),
                id=f"{name} {method} {path}",
            )
    # Item 7: validation gaps.
    sleep = {"type": "sleep", "payload": {"delayMs": 1}}
    for path in ("/jobs?tenantId=a%0A", "/events?tenantId=a%0A"):
        yield pytest.param(Bad("GET", path, 400, ("query", "tenantId")), id=f"newline {path}")
    yield pytest.param(
        Bad("GET", "/tenants/a%0A/limits", 400, ("path", "tenant_id"), says="tenant id"),
        id="newline in a path",
    )
    invalid_bodies = {
        "newline tenantId": (_job(**sleep).replace(TENANT.encode(), b"a\\n", 1), "tenantId"),
        "newline email to": (
            _job(type="email", payload={"to": "a@b.test\n", "subject": "s"}),
            "payload.to",
        ),
        "CRLF email subject": (
            _job(type="email", payload={"to": "a@b.test", "subject": "s\r\nBcc: c@d.test"}),
            "payload.subject",
        ),
        "numeric string": (_job(**sleep, maxAttempts="3"), "maxAttempts"),
        "mean of none": (
            _job(type="data_processing", payload={"operation": "mean", "values": []}),
            "payload.values",
        ),
        "stdev of one": (
            _job(type="data_processing", payload={"operation": "stdev", "values": [1]}),
            "payload.values",
        ),
        "header with a newline": (
            _job(type="webhook", payload={"url": "http://a.test", "headers": {"X-A": "1\n"}}),
            "payload.headers[...]",
        ),
    }
    for name, (body, key) in invalid_bodies.items():
        yield pytest.param(Bad("POST", "/jobs", 400, ("body", key), body), id=name)
    yield pytest.param(
        Bad("GET", "/jobs?status=failed", 400, ("query", "status"), says="PENDING, RUNNING"),
        id="unknown enum value",
    )
    webhook = _job(type="webhook", payload={"url": "ftp://a.test"})
    yield pytest.param(
        Bad("POST", "/jobs", 400, ("body", "payload.url"), webhook, says="http:// or https:// URL"),
        id="url in words",
    )
    yield pytest.param(
        Bad("POST", "/jobs", 400, ("body", None), b"", says="JSON body is required"),
        id="empty body",
    )


@pytest.fixture(scope="module")
def pending_job(api_base: str) -> str:
    body = {"tenantId": "explicit-target", "type": "sleep", "payload": {"delayMs": 1}}
    response = httpx.post(f"{api_base}/jobs", json=body, params={}, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["jobId"])


@pytest.mark.parametrize("case", list(_cases()))
def test_bad_requests_are_4xx_naming_the_field(api_base: str, pending_job: str, case: Bad) -> None:
    path = case.path.replace("{job}", pending_job)
    response = httpx.request(
        case.method, f"{api_base}{path}", content=case.body, headers=case.headers, timeout=10
    )
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["status_code"] == case.status
    assert case.says in response.text
    assert "regex" not in response.text  # patterns are said in words
    if case.where is not None:
        source, key = case.where
        [detail] = error["extra"]
        assert detail["source"] == source, detail
        assert detail.get("key") == key, detail
        assert detail["message"]
    # Nothing was created or changed.
    listing = httpx.get(f"{api_base}/jobs", params={"tenantId": TENANT}, timeout=10).json()
    assert listing["total"] == 0
    job = httpx.get(f"{api_base}/jobs/{pending_job}", timeout=10).json()
    assert (job["status"], job["maxAttempts"]) == ("PENDING", 5)


def test_posts_without_a_body_need_no_content_type(api_base: str) -> None:
    body = {"tenantId": "explicit-target", "type": "sleep", "payload": {"delayMs": 1}}
    job_id = httpx.post(f"{api_base}/jobs", json=body, timeout=10).json()["jobId"]
    cancelled = httpx.post(f"{api_base}/jobs/{job_id}/cancel", timeout=10)
    assert "content-type" not in cancelled.request.headers
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "CANCELLED")
    retried = httpx.post(f"{api_base}/jobs/{job_id}/retry", timeout=10)
    assert (retried.status_code, retried.json()["status"]) == (200, "PENDING")


async def test_a_subscription_to_a_tenant_id_with_a_newline_is_refused(api_base: str) -> None:
    async with socket(api_base) as ws:
        await ws.send({"type": "SUBSCRIBE", "tenantId": "a\n"})
        reply = await ws.receive()
        assert reply["type"] == "ERROR", reply
        assert "tenantId" in reply["message"]
        assert "regex" not in reply["message"]  # said in words


async def test_websocket_messages_too_deep_or_not_utf8_are_errors_not_a_closed_socket(
    api_base: str,
) -> None:
    async with socket(api_base) as ws:
        deep = '{"a":' * 10_000 + "1" + "}" * 10_000
        await ws.send(f'{{"type":"SUBSCRIBE","tenantId":"x","deep":{deep}}}')
        assert (await ws.receive())["type"] == "ERROR"
        # A binary frame whose text is not UTF-8.
        await ws.connection.send(b'{"type":"SUBSCRIBE","tenantId":"\xff"}')
        assert (await ws.receive())["type"] == "ERROR"
        await ws.subscribe("explicit-socket")  # still open, and still working


@pytest.mark.parametrize(
    "path",
    ["/health", "/health/ready", "/jobs", "/jobs/stats", "/jobs/{job}", f"/tenants/{TENANT}/limits",
     "/metrics", f"/events?tenantId={TENANT}", "/", "/schema/openapi.json"],
)  # fmt: skip
def test_every_get_route_answers_head(api_base: str, pending_job: str, path: str) -> None:
    url = f"{api_base}{path.replace('{job}', pending_job)}"
    head = httpx.head(url, timeout=10)
    assert head.status_code == 200
    assert head.content == b""
    if not path.startswith("/events"):  # a GET there is a stream that does not end
        get = httpx.get(url, timeout=10)
        assert head.headers["content-type"] == get.headers["content-type"]


def test_a_wrong_method_is_405_with_allow(api_base: str) -> None:
    response = httpx.put(f"{api_base}/jobs", timeout=10)
    assert response.status_code == 405
    assert response.json()["status_code"] == 405
    assert {"GET", "HEAD", "POST"} <= {m.strip() for m in response.headers["allow"].split(",")}
