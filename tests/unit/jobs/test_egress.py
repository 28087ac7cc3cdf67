"""The SSRF guard: which addresses are refused, and that requests go where was checked."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from ferry.jobs.builtin.webhook import call
from ferry.jobs.egress import EgressGuard, RefusedTarget, kind_of
from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import WebhookPayload

DNS = {
    "public.example": ["93.184.216.34"],
    "internal.example": ["10.0.0.7"],
    "sneaky.example": ["93.184.216.34", "127.0.0.1"],  # one bad address is enough
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
}


def resolve(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError("no such host")
    return DNS[host]


GUARD = EgressGuard(resolve=resolve)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
        ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
        ("169.254.169.254", "link-local (cloud metadata included)"), ("fe80::1", "link-local (cloud metadata included)"),
        ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"), ("93.184.216.34", None), ("2606:4700::1111", None),
    ],
)  # fmt: skip
def test_address_kinds(address: str, kind: str | None) -> None:
    assert kind_of(ipaddress.ip_address(address)) == kind


def test_public_targets_are_pinned_to_the_checked_address() -> None:
    target = GUARD.check("https://public.example:8443/hook?x=1")
    assert (target.url, target.host, target.host_header) == (
        "https://93.184.216.34:8443/hook?x=1", "public.example", "public.example:8443",
    )  # fmt: skip
    assert GUARD.check("http://v6.example/").url == "http://[2606:2800:220:1:248:1893:25c8:1946]/"


@pytest.mark.parametrize(
    "url",
    [
        "http://internal.example/",
        "http://sneaky.example/",
        "http://127.0.0.1:8000/",
        "http://[::1]/",
    ],
)
def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget, match="refused"):
        GUARD.check(url)


def test_private_targets_pass_when_allowed() -> None:
    allowed = EgressGuard(allow_private=True, resolve=resolve)
    assert allowed.check("http://internal.example/x").url == "http://10.0.0.7/x"


def test_a_redirect_to_a_private_address_fails_the_job_at_once() -> None:
    seen: list[tuple[str, str | None]] = []

    def server(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("host")))
        return httpx.Response(302, headers={"Location": "http://internal.example/admin"})

    client = httpx.Client(transport=httpx.MockTransport(server))
    payload = WebhookPayload(url="http://public.example/hook")
    with pytest.raises(PermanentError, match=r"internal\.example resolves to 10\.0\.0\.7"):
        call(payload, None, client, GUARD)
    assert seen == [("http://93.184.216.34/hook", "public.example")]  # never the private one


def test_redirects_between_public_targets_are_followed() -> None:
    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "/new"})
        return httpx.Response(200, text=f"{request.method} {request.url.path}")

    client = httpx.Client(transport=httpx.MockTransport(server))
    result = call(WebhookPayload(url="http://public.example/old"), None, client, GUARD)
    assert result == {"status": 200, "body": "GET /new"}  # a POST turned GET, as browsers do
