"""The webhook handler against real local HTTP servers: redirects and what they may carry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest

from ferry.jobs.builtin import webhook
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


@pytest.fixture
def cookie_setter() -> Iterator[tuple[str, list[str | None]]]:
    """A server that answers its first request with a session cookie, as a login would;
    its URL, and the Cookie header of each request it received."""
    cookies: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cookies.append(self.headers.get("Cookie"))
            self.send_response(200)
            if len(cookies) == 1:
                self.send_header("Set-Cookie", "session=tenant-a; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", cookies
    finally:
        server.shutdown()
        server.server_close()


def test_a_job_carries_no_cookie_an_earlier_job_was_given(
    cookie_setter: tuple[str, list[str | None]],
) -> None:
    """A worker thread keeps one client for all its jobs, of any tenant: a cookie set
    in answer to one job's request must not go out with the next one's."""
    base, cookies = cookie_setter
    failures: list[BaseException] = []

    def worker_thread() -> None:  # a fresh thread: the client `_client()` builds for it
        try:
            for tenant in ("tenant-a", "tenant-b"):
                payload = msgspec.convert({"url": f"{base}/hook", "body": tenant}, WebhookPayload)
                call(payload, None, guard=LOOPBACK)  # no client given: the thread's own
        except BaseException as exc:
            failures.append(exc)
        finally:
            webhook._client().close()

    thread = threading.Thread(target=worker_thread)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and failures == []
    assert cookies == [None, None]
