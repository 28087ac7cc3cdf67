"""The payload of each built-in job type: what a job of that type must carry.

A job's `type` tags its request (`ferry.service.schemas.NewJob`), so msgspec
validates each payload against the struct of its type in one decode and names
the offending field on error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ferry.fields import field_error, nests_deeper_than, pattern


class _Payload(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    pass


class SleepPayload(_Payload):
    delay_ms: Annotated[int, Meta(ge=0, le=600_000)]


# What the email package can put in a header and send without SMTPUTF8: an ASCII
# local part (atext and dots) and a domain name.
EMAIL_PATTERN = pattern(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$(?!\n)",
    "an email address such as name@example.com (ASCII letters, digits and"
    " !#$%&'*+/=?^_`{|}~.- before the @, a domain name after it)",
)
# Every character str.splitlines() breaks at: the email package refuses them in headers.
ONE_LINE_PATTERN = pattern(
    r"^[^\n\r\v\f\x1c-\x1e\x85\u2028\u2029]*$(?!\n)", "text on one line (no line breaks)"
)


class EmailPayload(_Payload):
    to: Annotated[str, Meta(pattern=EMAIL_PATTERN, max_length=320)]
    subject: Annotated[str, Meta(pattern=ONE_LINE_PATTERN, max_length=998)]
    body: Annotated[str, Meta(max_length=100_000)] = ""


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
URL_PATTERN = pattern(r"^https?://[^\s]+$(?!\n)", "an http:// or https:// URL without spaces")
# What an HTTP/1.1 request line may carry (RFC 9110 token; field value without
# control characters or surrounding whitespace), in ASCII.
HEADER_NAME_PATTERN = pattern(
    r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$(?!\n)",
    "an HTTP header name (ASCII letters, digits and !#$%&'*+.^_`|~-)",
)
HEADER_VALUE_PATTERN = pattern(
    r"^(?:[!-~]+(?:[ \t]+[!-~]+)*)?$(?!\n)",
    "an HTTP header value (printable ASCII; spaces and tabs only between words)",
)
HeaderName = Annotated[str, Meta(pattern=HEADER_NAME_PATTERN, max_length=256)]
HeaderValue = Annotated[str, Meta(pattern=HEADER_VALUE_PATTERN, max_length=8192)]


class WebhookPayload(_Payload):
    url: Annotated[str, Meta(pattern=URL_PATTERN, max_length=2048)]
    method: HttpMethod = "POST"
    headers: Annotated[dict[HeaderName, HeaderValue], Meta(max_length=50)] = {}
    body: Any = None
    timeout_ms: Annotated[int, Meta(ge=1, le=60_000)] = 10_000

    def __post_init__(self) -> None:
        if nests_deeper_than(self.body, MAX_BODY_DEPTH):
            raise field_error("body", f"nests deeper than {MAX_BODY_DEPTH} levels")


MAX_BODY_DEPTH = 32


Operation = Literal["count", "sum", "mean", "median", "min", "max", "stdev", "percentiles"]
# The fewest values each operation is defined for (count and sum of none are 0).
MIN_VALUES: dict[str, int] = {
    "mean": 1, "median": 1, "min": 1, "max": 1, "percentiles": 1, "stdev": 2,
}  # fmt: skip


class DataProcessingPayload(_Payload):
    operation: Operation
    values: Annotated[list[float], Meta(max_length=1_000_000)]
    percentiles: Annotated[list[Annotated[float, Meta(ge=0, le=100)]], Meta(max_length=100)] = (
        msgspec.field(default_factory=lambda: [50.0, 90.0, 99.0])
    )

    def __post_init__(self) -> None:
        needed = MIN_VALUES.get(self.operation, 0)
        if len(self.values) < needed:
            plural = "s" if needed > 1 else ""
            raise field_error("values", f"{self.operation} needs at least {needed} value{plural}")
