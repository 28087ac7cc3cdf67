"""The email handler as pure logic: the message it builds, and what it refuses for good."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.jobs.builtin.email import build_message, deliver
from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import EMAIL_PATTERN, ONE_LINE_PATTERN, EmailPayload
from ferry.settings import Settings


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
