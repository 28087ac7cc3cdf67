"""Request bodies (pure logic): which media types are JSON, and how a body that cannot
be read as the route's type becomes a 400 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.exceptions import ValidationException

from ferry.api.bodies import decode, is_json
from ferry.jobs.registry import load
from ferry.queue.fair.limits import TenantLimits
from ferry.service.schemas import BulkRetry, JobPatch, request_types

# The request types of the built-in job types, as the app builds them.
_TYPES = request_types(load(()))
NewJob, NewJobBatch = _TYPES["NewJob"], _TYPES["NewJobBatch"]


@pytest.mark.parametrize(
    ("content_type", "json"),
    [("application/json", True), ("Application/JSON; charset=utf-8", True),
     ("application/merge-patch+json", True), ("application/vnd.ferry.v1+json ; x=y", True),
     (None, False), ("", False), ("text/plain", False), ("text/json", False),
     ("application/x-www-form-urlencoded", False), ("multipart/form-data; boundary=x", False),
     ("application/xml", False), ("application/jsonx", False), ("application/json-seq", False),
     ("application/+json", False)],
)  # fmt: skip
def test_json_media_types(content_type: str | None, json: bool) -> None:
    assert is_json(content_type) is json


def refused(data_type: Any, body: bytes) -> dict[str, Any]:
    with pytest.raises(ValidationException) as info:
        decode(data_type, body, "POST /jobs")
    assert info.value.status_code == 400
    [error] = info.value.extra  # type: ignore[misc]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize(
    ("data_type", "body", "key"),
    [
        (NewJob, b'{"tenantId":"t","type":"sleep","payload":{"delayMs":1},"maxAttempts":"3"}',
         "maxAttempts"),
        (NewJob, b'{"tenantId":"t","type":"sleep","payload":{"delayMs":1.5}}', "payload.delayMs"),
        (NewJob, b'{"tenantId":"t","type":"sleep","payload":{"delayMs":true}}', "payload.delayMs"),
        (NewJobBatch, b'{"jobs":[{"tenantId":"t","type":"sleep","payload":{"delayMs":"1"}}]}',
         "jobs[0].payload.delayMs"),
        (NewJob, b'{"tenantId":"t","type":"webhook","payload":{"url":"http://a.test","headers":{"a b":"1"}}}',
         "payload.headers"),
        (JobPatch, b'{"maxAttempts":"2"}', "maxAttempts"),
        (BulkRetry, b'{"tenantId":"t","limit":"5"}', "limit"),
        (TenantLimits, b'{"weight":"3"}', "weight"),
        (TenantLimits, b'{"maxRunning":1.0}', "maxRunning"),
    ],
)  # fmt: skip
def test_types_are_strict_and_errors_name_the_field(data_type: Any, body: bytes, key: str) -> None:
    error = refused(data_type, body)
    assert (error["key"], error["source"]) == (key, "body")
    assert error["message"].startswith("Expected")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"tenantId":"t","type":"webhook","payload":{"url":"http://a.test","body":'
         + b"[" * 10_000 + b"]" * 10_000 + b"}}", "nests too deeply"),
        (b'{"tenantId":"t\xff","type":"sleep","payload":{"delayMs":1}}', "not valid UTF-8"),
        (b'{"tenantId":"t",', "not valid JSON"),
        (b'{"tenantId":"t\\ud800","type":"sleep","payload":{"delayMs":1}}', "not valid JSON"),
    ],
)  # fmt: skip
def test_unreadable_bodies_are_400_about_the_body(body: bytes, says: str) -> None:
    error = refused(NewJob, body)
    assert error["source"] == "body" and "key" not in error
    assert says in error["message"]


def test_a_valid_body_is_its_type() -> None:
    job = decode(NewJob, b'{"tenantId":"t","type":"sleep","payload":{"delayMs":1}}', "POST /jobs")
    assert (job.tenant_id, job.payload.delay_ms) == ("t", 1)
    limits = decode(TenantLimits, b'{"ratePerSecond":2}', "PUT /tenants/t/limits")
    assert limits.rate_per_second == 2.0  # an integer is a number
