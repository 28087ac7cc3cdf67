"""`webhook`: an HTTP request (minimal for now)."""

from __future__ import annotations

from ferry.schemas import WebhookPayload
from ferry.worker.runtime import job_handler


@job_handler("webhook", time_limit_ms=90_000)
def run(payload: WebhookPayload) -> dict[str, str]:
    return {"url": payload.url}
