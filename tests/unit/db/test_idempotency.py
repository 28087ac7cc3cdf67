"""The digest of a create request that an Idempotency-Key is remembered with: every
field counts, and the fields added later count only when a job sets them, so that a
request hashes as it did before they existed. No servers."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ferry.db.idempotency import LATER_FIELDS, request_hash
from ferry.jobs.registry import load
from ferry.service.schemas import request_types

TYPES = request_types(load(()))


def decoded(body: dict[str, Any], kind: str = "NewJob") -> Any:
    return msgspec.json.decode(msgspec.json.encode(body), type=TYPES[kind])


def as_the_api_hashes(body: dict[str, Any], kind: str = "NewJob") -> str:
    """What POST /jobs (or /jobs/batch) hashes: the request as decoded, encoded again."""
    return request_hash(msgspec.json.encode(decoded(body, kind)))


JOB = {"tenantId": "t-1", "type": "sleep", "payload": {"delayMs": 5}}
# How the API encoded that request before LATER_FIELDS existed (field for field).
BEFORE = b'{"type":"sleep","payload":{"delayMs":5},"tenantId":"t-1","maxAttempts":null,"delayMs":0}'


def test_a_request_without_the_later_fields_hashes_as_before_they_existed() -> None:
    assert set(LATER_FIELDS) <= set(msgspec.json.encode(decoded(JOB)).decode().split('"'))
    assert as_the_api_hashes(JOB) == request_hash(BEFORE)
    batch = {"jobs": [JOB, JOB]}
    before = b'{"jobs":[' + BEFORE + b"," + BEFORE + b"]}"
    assert as_the_api_hashes(batch, "NewJobBatch") == request_hash(before)


@pytest.mark.parametrize(
    "extra", [{"retryBaseMs": 100}, {"retryCapMs": 60_000}, {"retryBaseMs": 0, "retryCapMs": 0}]
)
def test_the_later_fields_count_once_set(extra: dict[str, int]) -> None:
    assert as_the_api_hashes({**JOB, **extra}) != as_the_api_hashes(JOB)
    batch = {"jobs": [JOB, {**JOB, **extra}]}
    assert as_the_api_hashes(batch, "NewJobBatch") != as_the_api_hashes(
        {"jobs": [JOB, JOB]}, "NewJobBatch"
    )


def test_every_other_field_counts() -> None:
    hashes = {
        as_the_api_hashes(body)
        for body in (
            JOB,
            {**JOB, "tenantId": "t-2"},
            {**JOB, "payload": {"delayMs": 6}},
            {**JOB, "maxAttempts": 3},
            {**JOB, "delayMs": 10},
            {**JOB, "retryBaseMs": 100, "retryCapMs": 200},
            {**JOB, "retryBaseMs": 100, "retryCapMs": 300},
        )
    }
    assert len(hashes) == 7


def test_a_payload_field_named_like_a_later_field_is_the_payloads() -> None:
    """Only a job's own fields are left out when null, never a payload's."""
    hook = {"tenantId": "t-1", "type": "webhook", "payload": {"url": "https://a.test"}}
    with_null = {**hook, "payload": {"url": "https://a.test", "body": {"retryBaseMs": None}}}
    with_none = {**hook, "payload": {"url": "https://a.test", "body": {}}}
    assert as_the_api_hashes(with_null) != as_the_api_hashes(with_none)
