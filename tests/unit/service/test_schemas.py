"""New jobs and bulk retries as the API decodes them (`ferry.service.schemas`): the type tag,
defaults, names on the wire, and errors that name the field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ferry.fields import in_words
from ferry.jobs.payloads import (
    DataProcessingPayload,
    WebhookPayload,
)
from ferry.jobs.registry import load
from ferry.service.schemas import BulkRetry, job_type_of, request_types

# The request types of the built-in job types, as the app builds them.
TYPES = request_types(load(()))
NewJob = TYPES["NewJob"]


def decode(body: bytes) -> Any:
    return msgspec.json.decode(body, type=NewJob)


def test_the_type_tag_selects_the_payload_struct() -> None:
    cases = {
        b'{"tenantId":"a","type":"sleep","payload":{"delayMs":5}}': "NewSleepJob",
        b'{"tenantId":"a","type":"email","payload":{"to":"x@y.test","subject":"s"}}': "NewEmailJob",
        b'{"tenantId":"a","type":"webhook","payload":{"url":"https://x.test"}}': "NewWebhookJob",
        b'{"tenantId":"a","type":"data_processing","payload":{"operation":"sum","values":[1]}}': (
            "NewDataProcessingJob"
        ),
    }
    for body, expected in cases.items():
        job = decode(body)
        assert type(job).__name__ == expected
        assert job_type_of(job) == msgspec.json.decode(body)["type"]


def test_defaults() -> None:
    job = decode(b'{"tenantId":"a","type":"webhook","payload":{"url":"http://x.test/h"}}')
    assert isinstance(job.payload, WebhookPayload)
    assert (job.payload.method, job.payload.timeout_ms, job.payload.headers) == ("POST", 10_000, {})
    assert (job.max_attempts, job.delay_ms) == (None, 0)
    data = msgspec.convert({"operation": "percentiles", "values": [1]}, DataProcessingPayload)
    assert data.percentiles == [50.0, 90.0, 99.0]


def test_camel_case_on_the_wire() -> None:
    job = decode(b'{"tenantId":"a","type":"sleep","payload":{"delayMs":5},"maxAttempts":3}')
    assert msgspec.to_builtins(job) == {
        "type": "sleep", "tenantId": "a", "maxAttempts": 3, "delayMs": 0, "payload": {"delayMs": 5},
        "retryBaseMs": None, "retryCapMs": None, "runAt": None, "priority": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"tenantId":"a","type":"sleep","payload":{"delay_ms":5}}', "$.payload"),
        (b'{"tenantId":"a","type":"sleep","payload":{"delayMs":true}}', "$.payload.delayMs"),
        (b'{"tenantId":"a","type":"nope","payload":{}}', "$.type"),
        (b'{"tenantId":"a b","type":"sleep","payload":{"delayMs":1}}', "$.tenantId"),
        (b'{"tenantId":"a","type":"webhook","payload":{"url":"https://x.test","headers":{"a":1}}}',
         "$.payload.headers[...]"),
    ],
)  # fmt: skip
def test_errors_name_the_field(body: bytes, where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(body)
    assert str(info.value).endswith(f"`{where}`")


def test_payloads_nesting_too_deep_are_refused() -> None:
    from ferry.fields import nests_deeper_than
    from ferry.jobs.payloads import MAX_BODY_DEPTH

    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    assert not nests_deeper_than(nested(MAX_BODY_DEPTH), MAX_BODY_DEPTH)
    assert nests_deeper_than(nested(MAX_BODY_DEPTH + 1), MAX_BODY_DEPTH)
    assert nests_deeper_than(nested(100_000), MAX_BODY_DEPTH)  # no recursion to exhaust
    job = {
        "tenantId": "t",
        "type": "webhook",
        "payload": {"url": "https://example.test", "body": nested(40)},
    }
    with pytest.raises(msgspec.ValidationError, match="nests deeper than 32"):
        msgspec.convert(job, NewJob)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"tenantId":"a\\n","type":"sleep","payload":{"delayMs":1}}', "$.tenantId"),
        (b'{"tenantId":"a","type":"email","payload":{"to":"a@b.test","subject":"a\\r\\nBcc: c@d.test"}}',
         "$.payload.subject"),
        (b'{"tenantId":"a","type":"email","payload":{"to":"a@b.test\\n","subject":"s"}}', "$.payload.to"),
        (b'{"tenantId":"a","type":"webhook","payload":{"url":"http://a.test","headers":{"X":"1\\n"}}}',
         "$.payload.headers[...]"),
        (b'{"tenantId":"a","type":"sleep","payload":{"delayMs":1},"maxAttempts":"3"}', "$.maxAttempts"),
        (b'{"tenantId":"a","type":"sleep","payload":{"delayMs":"1"}}', "$.payload.delayMs"),
    ],
)  # fmt: skip
def test_line_breaks_and_numeric_strings_are_refused(body: bytes, where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(body)
    assert str(info.value).endswith(f"`{where}`")


def test_failed_since_needs_a_timezone() -> None:
    with pytest.raises(msgspec.ValidationError, match="timezone"):
        msgspec.json.decode(b'{"tenantId":"t","failedSince":"2026-01-01T00:00:00"}', type=BulkRetry)
    aware = b'{"tenantId":"t","failedSince":"2026-01-01T00:00:00+02:00"}'
    assert msgspec.json.decode(aware, type=BulkRetry).failed_since is not None


def test_errors_say_patterns_in_words() -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(b'{"tenantId":"a b","type":"sleep","payload":{"delayMs":1}}')
    assert in_words(str(info.value)) == (
        "Expected a tenant id: 1 to 100 letters, digits and . _ : - (starting with a letter"
        " or digit) - at `$.tenantId`"
    )
