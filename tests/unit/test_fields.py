"""The patterns of the API's text fields (`ferry.fields`): whole values only, in both dialects."""

from __future__ import annotations

import re

import jsonschema_rs
import pytest

from ferry.fields import PATTERN_WORDS, TENANT_ID_PATTERN
from ferry.jobs.payloads import (
    EMAIL_PATTERN,
    HEADER_NAME_PATTERN,
    HEADER_VALUE_PATTERN,
    ONE_LINE_PATTERN,
    URL_PATTERN,
)
from ferry.service.schemas import SCHEDULE_NAME_PATTERN

VALID = {
    TENANT_ID_PATTERN: "tenant-1",
    EMAIL_PATTERN: "ada.lovelace+jobs@mail.example.test",
    ONE_LINE_PATTERN: "Hello, world",
    URL_PATTERN: "https://hook.test/path?q=1",
    HEADER_NAME_PATTERN: "X-Trace-Id",
    HEADER_VALUE_PATTERN: "a b\tc",
    SCHEDULE_NAME_PATTERN: "nightly report",
}


@pytest.mark.parametrize("regex", list(PATTERN_WORDS))
def test_patterns_match_whole_values_in_python_and_in_ecma(regex: str) -> None:
    """msgspec searches with Python's `re`, where `$` matches before a final newline;
    clients and schemathesis read the OpenAPI document's ECMA dialect."""
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": regex})
    valid = VALID[regex]
    for value in (valid + "\n", valid + "\r\n", "\n" + valid):
        assert re.search(regex, value) is None, repr(value)
        assert not ecma.is_valid(value), repr(value)
    assert re.search(regex, valid) and ecma.is_valid(valid)
