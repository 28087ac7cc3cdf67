"""Keys out of log lines: what `ferry.observability.logs.redact` and its filter remove, and what they keep."""

from __future__ import annotations

import json
import logging

import pytest

from ferry.observability.logs import JsonFormatter, RedactFilter, TextFormatter, redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1:5 - "GET /events?tenantId=t&token=fk_a-B_1 HTTP/1.1" 200',
            '127.0.0.1:5 - "GET /events?tenantId=t&token=[redacted] HTTP/1.1" 200',
        ),
        ('"WebSocket /ws?token=a%2Fb" [accepted]', '"WebSocket /ws?token=[redacted]" [accepted]'),
        ("GET /x?access_token=zz&y=1", "GET /x?access_token=[redacted]&y=1"),
        ("next=%2Fws%3Ftoken%3Dabc%26x%3D1", "next=%2Fws%3Ftoken%3D[redacted]%26x%3D1"),
        ("/ws?TOKEN=abc#top", "/ws?TOKEN=[redacted]#top"),
        ("Authorization: Bearer fk_123", "Authorization: Bearer [redacted]"),
        ("offered bearer.fk_xyz, ferry", "offered bearer.[redacted], ferry"),
        # Nothing secret: unchanged.
        ("an API key is required: Authorization: Bearer <key>", None),
        ('"GET /jobs?tenantId=t&limit=5 HTTP/1.1" 200', None),
        ("tokens=3 token= x", None),
    ],
)
def test_redact(line: str, expected: str | None) -> None:
    assert redact(line) == (line if expected is None else expected)


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_the_filter_redacts_arguments_and_exceptions_before_formatting(
    formatter: logging.Formatter,
) -> None:
    try:
        raise RuntimeError("GET http://127.0.0.1:1/events?token=fk_in_exception failed")
    except RuntimeError as exc:
        error = exc
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/ws?token=fk_in_args", "1.1", 200),
        (RuntimeError, error, error.__traceback__),
    )
    assert RedactFilter().filter(record)
    line = formatter.format(record)
    assert "fk_in_" not in line
    text = json.loads(line)["exception"] if isinstance(formatter, JsonFormatter) else line
    assert "events?token=[redacted] failed" in text
    assert "/ws?token=[redacted] HTTP/1.1" in line


def test_a_record_whose_arguments_do_not_fit_still_logs_without_them() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s and %s ?token=k", ("one",), None)
    assert RedactFilter().filter(record)
    assert JsonFormatter().format(record).count("%s and %s ?token=[redacted]") == 1
