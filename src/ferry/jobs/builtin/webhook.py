"""`webhook`: a real HTTP request.

2xx succeeds; 429, 5xx, timeouts and connection errors are retried; any other
status fails at once. With WEBHOOK_SECRET set, the request carries
`X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body>`. Targets (and every
redirect) must resolve to public addresses (`ferry.jobs.egress`); one that does not
fails the job at once. A redirect to another scheme, host or port drops the
credentials (`Authorization`, `Cookie`) and the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec

from ferry.jobs.egress import EgressGuard, RefusedTarget
from ferry.jobs.errors import PermanentError
from ferry.jobs.payloads import WebhookPayload
from ferry.jobs.registry import job, worker_settings
from ferry.text import storable

SIGNATURE_HEADER = "X-Ferry-Signature"
USER_AGENT = "Ferry-Webhook/1"
RESPONSE_PREVIEW = 500  # characters of a response body kept in the result
ERROR_PREVIEW = 200  # ... and in the error
# Dropped when a redirect leaves the origin they were sent to.
CREDENTIALS = frozenset(
    {"authorization", "proxy-authorization", "cookie", SIGNATURE_HEADER.lower()}
)
MAX_REDIRECTS = 5
PUBLIC_ONLY = EgressGuard()
_local = threading.local()


class RetryableHTTPError(Exception):
    """The target answered with a status worth another attempt (429 or 5xx)."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return msgspec.json.encode(body), "application/json"


def _client() -> httpx.Client:
    # One connection pool per worker thread: keep-alive across jobs to one host.
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        # Redirects are followed by `call`, which checks every hop. No cookies are
        # kept: the thread's next job may be another tenant's, to the same host.
        no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
        client = _local.client = httpx.Client(
            headers={"User-Agent": USER_AGENT}, cookies=no_cookies
        )
    return client


def call(
    payload: WebhookPayload,
    secret: str | None,
    client: httpx.Client | None = None,
    guard: EgressGuard = PUBLIC_ONLY,
) -> dict[str, Any]:
    body, content_type = encode_body(payload.body)
    headers = dict(payload.headers)
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    method, url = payload.method, payload.url
    for _ in range(MAX_REDIRECTS + 1):
        response = _send(client or _client(), guard, method, url, body, headers, payload.timeout_ms)
        if not (response.is_redirect and "location" in response.headers):
            break
        target = urljoin(url, response.headers["location"])
        if _origin(target) != _origin(url):
            # As browsers and curl do: credentials are for the origin they were given for.
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIALS}
        url = target
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, body = "GET", b""  # as browsers (and httpx) do
    else:
        raise PermanentError(f"{payload.url}: more than {MAX_REDIRECTS} redirects")
    status = response.status_code
    # The target's text is stored (result, error): made storable first (ferry.text).
    if 200 <= status < 300:
        return {"status": status, "body": storable(response.text, RESPONSE_PREVIEW)}
    message = f"{method} {url} answered {status}: {storable(response.text, ERROR_PREVIEW)}"
    if status == 429 or status >= 500:
        raise RetryableHTTPError(message)
    raise PermanentError(message)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, parts.hostname, port


def _send(
    client: httpx.Client,
    guard: EgressGuard,
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_ms: int,
) -> httpx.Response:
    try:
        target = guard.check(url)
    except RefusedTarget as exc:
        raise PermanentError(str(exc)) from exc
    # To the address that was checked; the name goes in Host and in TLS.
    extensions = {"sni_hostname": target.host} if url.startswith("https") else {}
    try:
        return client.request(
            method,
            target.url,
            content=body or None,
            headers={**headers, "Host": target.host_header},
            timeout=timeout_ms / 1000,
            extensions=extensions,
        )
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"no answer from {url} within {timeout_ms} ms") from exc
    except httpx.LocalProtocolError as exc:  # the request itself cannot be sent, ever
        raise PermanentError(f"{method} {url} cannot be sent: {exc}") from exc
    except httpx.TransportError as exc:
        raise ConnectionError(f"{method} {url} failed: {exc}") from exc


@job("webhook", time_limit_s=90)
def run(payload: WebhookPayload) -> dict[str, Any]:
    settings = worker_settings()
    return call(payload, settings.webhook_secret, guard=EgressGuard(settings.webhook_allow_private))
