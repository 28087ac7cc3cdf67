"""`data_processing`: a statistic over `values` (minimal for now)."""

from __future__ import annotations

from ferry.schemas import DataProcessingPayload
from ferry.worker.runtime import job_handler


@job_handler("data_processing", time_limit_ms=120_000)
def run(payload: DataProcessingPayload) -> dict[str, float]:
    return {"count": float(len(payload.values))}
