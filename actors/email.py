"""`email`: sends a message (minimal for now: written to the local outbox)."""

from __future__ import annotations

from ferry.schemas import EmailPayload
from ferry.worker.runtime import job_handler


@job_handler("email", time_limit_ms=60_000)
def run(payload: EmailPayload) -> dict[str, str]:
    return {"to": payload.to}
