"""Job handlers as pure logic: statistics, message building, webhook signing, backoff."""

from __future__ import annotations

import hashlib
import hmac
import random
import statistics
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.jobs.builtin.data_processing import compute, percentile
from ferry.jobs.builtin.email import build_message, deliver
from ferry.jobs.builtin.webhook import encode_body, sign
from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import EMAIL_PATTERN, ONE_LINE_PATTERN, DataProcessingPayload, EmailPayload
from ferry.settings import Settings
from ferry.worker.backoff import retry_delay_ms


def process(operation: str, values: list[float], **extra: object) -> object:
    payload = msgspec.convert(
        {"operation": operation, "values": values, **extra}, DataProcessingPayload
    )
    return compute(payload)["value"]


def test_statistics_match_the_standard_library() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-100, 100) for _ in range(501)]
    assert process("count", values) == 501
    assert process("sum", values) == pytest.approx(sum(values))
    assert process("mean", values) == pytest.approx(statistics.fmean(values))
    assert process("median", values) == statistics.median(values)
    assert process("min", values) == min(values)
    assert process("max", values) == max(values)
    assert process("stdev", values) == pytest.approx(statistics.stdev(values))


def test_percentiles_interpolate_linearly() -> None:
    assert process("percentiles", [4, 1, 3, 2], percentiles=[0, 50, 100, 25]) == {
        "p0": 1, "p50": 2.5, "p100": 4, "p25": 1.75,
    }  # fmt: skip
    assert percentile([10.0], 99) == 10.0
    ordered = sorted(random.Random(1).random() for _ in range(1000))
    assert percentile(ordered, 50) == pytest.approx(statistics.median(ordered))


@pytest.mark.parametrize(
    ("operation", "values"),
    [("mean", []), ("median", []), ("min", []), ("max", []), ("stdev", [1.0]),
     ("percentiles", [])],
)  # fmt: skip
def test_too_few_values_are_refused_by_the_payload(operation: str, values: list[float]) -> None:
    # At create (a 400 naming payload.values), never as a failure in the worker.
    with pytest.raises(msgspec.ValidationError, match=f"`values`: {operation} needs at least"):
        process(operation, values)


def test_empty_count_and_sum_are_zero() -> None:
    assert (process("count", []), process("sum", [])) == (0, 0)


def test_email_message_headers() -> None:
    message = build_message(EmailPayload(to="ada@example.test", subject="Hi there", body="Line"))
    assert (message["To"], message["Subject"]) == ("ada@example.test", "Hi there")
    assert message["Message-ID"].endswith("@ferry.local>")
    assert message.get_content().strip() == "Line"


@pytest.mark.parametrize(
    ("to", "subject"),
    [("ada@example.test", "Hi\r\nBcc: eve@example.test"),
     ("ada@example.test\r\nBcc: eve@example.test", "Hi"), ("ada@example.test", "Hi\x0bthere")],
)  # fmt: skip
def test_a_message_the_email_package_refuses_fails_permanently(
    tmp_path: Path, to: str, subject: str
) -> None:
    """What no retry can send (the API refuses it at create; a job stored before that
    rule must still fail once, not five times)."""
    settings = Settings(outbox_path=str(tmp_path / "outbox.mbox"))
    with pytest.raises(PermanentError, match="cannot be sent"):
        deliver(EmailPayload(to=to, subject=subject), settings)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure reproduces
    database=None,
)
@given(
    to=st.from_regex(EMAIL_PATTERN, fullmatch=True),
    subject=st.from_regex(ONE_LINE_PATTERN, fullmatch=True),
)
def test_every_address_and_subject_the_api_accepts_can_be_sent(to: str, subject: str) -> None:
    message = build_message(EmailPayload(to=to, subject=subject, body="x"))
    assert message.as_bytes()  # what the SMTP client and the outbox write


def test_webhook_signature_is_hmac_sha256_of_the_body() -> None:
    body, content_type = encode_body({"b": 1, "a": [1, 2]})
    assert content_type == "application/json"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert encode_body("plain") == (b"plain", "text/plain; charset=utf-8")
    assert encode_body(None) == (b"", None)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(3)
    for attempt, ceiling in [
        (1, 2_000),
        (2, 4_000),
        (3, 8_000),
        (4, 16_000),
        (5, 32_000),
        (9, 32_000),
    ]:
        delays = [retry_delay_ms(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered, not in lockstep
