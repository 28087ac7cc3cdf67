"""Payload validation per job type (pure msgspec decoding)."""

from __future__ import annotations

import msgspec
import pytest

from ferry.schemas import (
    DataProcessingPayload,
    NewDataProcessingJob,
    NewEmailJob,
    NewJob,
    NewSleepJob,
    NewWebhookJob,
    WebhookPayload,
    job_type_of,
)


def decode(body: bytes) -> NewJob:
    job: NewJob = msgspec.json.decode(body, type=NewJob)
    return job


def test_the_type_tag_selects_the_payload_struct() -> None:
    cases = {
        b'{"tenantId":"a","type":"sleep","payload":{"delayMs":5}}': NewSleepJob,
        b'{"tenantId":"a","type":"email","payload":{"to":"x@y.io","subject":"s"}}': NewEmailJob,
        b'{"tenantId":"a","type":"webhook","payload":{"url":"https://x.io"}}': NewWebhookJob,
        b'{"tenantId":"a","type":"data_processing","payload":{"operation":"sum","values":[1]}}': (
            NewDataProcessingJob
        ),
    }
    for body, expected in cases.items():
        job = decode(body)
        assert type(job) is expected
        assert job_type_of(job) == msgspec.json.decode(body)["type"]


def test_defaults() -> None:
    job = decode(b'{"tenantId":"a","type":"webhook","payload":{"url":"http://x.io/h"}}')
    assert isinstance(job.payload, WebhookPayload)
    assert (job.payload.method, job.payload.timeout_ms, job.payload.headers) == ("POST", 10_000, {})
    assert (job.max_attempts, job.delay_ms) == (None, 0)
    data = msgspec.convert({"operation": "percentiles", "values": [1]}, DataProcessingPayload)
    assert data.percentiles == [50.0, 90.0, 99.0]


def test_camel_case_on_the_wire() -> None:
    job = decode(b'{"tenantId":"a","type":"sleep","payload":{"delayMs":5},"maxAttempts":3}')
    assert msgspec.to_builtins(job) == {
        "type": "sleep", "tenantId": "a", "maxAttempts": 3, "delayMs": 0, "payload": {"delayMs": 5},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"tenantId":"a","type":"sleep","payload":{"delay_ms":5}}', "$.payload"),
        (b'{"tenantId":"a","type":"sleep","payload":{"delayMs":true}}', "$.payload.delayMs"),
        (b'{"tenantId":"a","type":"nope","payload":{}}', "$.type"),
        (b'{"tenantId":"a b","type":"sleep","payload":{"delayMs":1}}', "$.tenantId"),
        (b'{"tenantId":"a","type":"webhook","payload":{"url":"https://x.io","headers":{"a":1}}}',
         "$.payload.headers[...]"),
    ],
)  # fmt: skip
def test_errors_name_the_field(body: bytes, where: str) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(body)
    assert str(info.value).endswith(f"`{where}`")


def test_payloads_nesting_too_deep_are_refused() -> None:
    from ferry.schemas import MAX_BODY_DEPTH, NewJob, nests_deeper_than

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
        "payload": {"url": "https://example.com", "body": nested(40)},
    }
    with pytest.raises(msgspec.ValidationError, match="nests deeper than 32"):
        msgspec.convert(job, NewJob)
