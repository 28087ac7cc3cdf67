"""The webhook handler as pure logic: the body it sends and its signature."""

from __future__ import annotations

import hashlib
import hmac

from ferry.jobs.builtin.webhook import encode_body, sign


def test_webhook_signature_is_hmac_sha256_of_the_body() -> None:
    body, content_type = encode_body({"b": 1, "a": [1, 2]})
    assert content_type == "application/json"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert encode_body("plain") == (b"plain", "text/plain; charset=utf-8")
    assert encode_body(None) == (b"", None)
