"""`webhook`: a real HTTP request.

2xx succeeds; 429, 5xx, timeouts and connection errors are retried; any other
status fails at once. With WEBHOOK_SECRET set, the request carries
`X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

import httpx
import msgspec

from ferry.schemas import WebhookPayload
from ferry.worker.runtime import PermanentError, job_handler, worker_settings

SIGNATURE_HEADER = "X-Ferry-Signature"
USER_AGENT = "Ferry-Webhook/1"
RESPONSE_PREVIEW = 500
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
        client = _local.client = httpx.Client(
            follow_redirects=True, headers={"User-Agent": USER_AGENT}
        )
    return client


def call(
    payload: WebhookPayload, secret: str | None, client: httpx.Client | None = None
) -> dict[str, Any]:
    body, content_type = encode_body(payload.body)
    headers = dict(payload.headers)
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        response = (client or _client()).request(
            payload.method,
            payload.url,
            content=body or None,
            headers=headers,
            timeout=payload.timeout_ms / 1000,
        )
    except httpx.TimeoutException as exc:
        raise TimeoutError(f"no answer from {payload.url} within {payload.timeout_ms} ms") from exc
    except httpx.TransportError as exc:
        raise ConnectionError(f"{payload.method} {payload.url} failed: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return {"status": status, "body": response.text[:RESPONSE_PREVIEW]}
    message = f"{payload.method} {payload.url} answered {status}: {response.text[:200]}"
    if status == 429 or status >= 500:
        raise RetryableHTTPError(message)
    raise PermanentError(message)


@job_handler("webhook", time_limit_ms=90_000)
def run(payload: WebhookPayload) -> dict[str, Any]:
    return call(payload, worker_settings().webhook_secret)
