"""The webhook handler against real local HTTP servers: redirects and what they may carry."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import msgspec
import pytest

from ferry.jobs.builtin.webhook import SIGNATURE_HEADER, call
from ferry.jobs.egress import EgressGuard
from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import WebhookPayload
from tests.support.servers import Hooks, webhook_server

LOOPBACK = EgressGuard(allow_private=True)
CREDENTIALS = {"Authorization": "Bearer hook-token", "Cookie": "session=s3cret"}


@pytest.fixture(scope="module")
def first() -> Iterator[Hooks]:
    with webhook_server() as server:
        yield server


@pytest.fixture(scope="module")
def second() -> Iterator[Hooks]:
    with webhook_server() as server:  # another port: another origin
        yield server


def send(url: str, **fields: object) -> dict[str, object]:
    payload = msgspec.convert({"url": url, **fields}, WebhookPayload)
    with httpx.Client() as client:
        return call(payload, "hook-secret", client=client, guard=LOOPBACK)


def landed(hooks: Hooks, path: str) -> dict[str, str]:
    [request] = hooks.received(path)
    return {name.lower(): value for name, value in request["headers"].items()}


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_drops_credentials_and_signature(
    first: Hooks, second: Hooks, code: int
) -> None:
    target = f"{second.base}/landing-{code}"
    send(f"{first.base}/redirect/{code}?to={quote(target)}", headers=CREDENTIALS, body={"a": 1})
    headers = landed(second, f"/landing-{code}")
    assert not {"authorization", "cookie", SIGNATURE_HEADER.lower()} & set(headers), headers
    # What was sent first carried them all.
    sent = landed(first, f"/redirect/{code}")
    assert {"authorization", "cookie", SIGNATURE_HEADER.lower()} <= set(sent)


def test_a_redirect_within_the_origin_keeps_them(first: Hooks) -> None:
    send(f"{first.base}/redirect/307?to={quote('/kept')}", headers=CREDENTIALS, body={"a": 1})
    headers = landed(first, "/kept")
    assert headers["authorization"] == "Bearer hook-token"
    assert headers["cookie"] == "session=s3cret"
    assert headers[SIGNATURE_HEADER.lower()].startswith("sha256=")


def test_a_request_that_cannot_be_sent_fails_for_good(first: Hooks) -> None:
    with pytest.raises(PermanentError, match="cannot be sent"):
        send(f"{first.base}/status/200", headers={"Content-Length": "not a number"})
