"""A module of job types that fails to import (a typo in a name it imports)."""

from __future__ import annotations

from typing import Any

from ferry import job
from ferry.jobs.context import JobContxt  # type: ignore[attr-defined]  # noqa: F401


@job("never")
def never(payload: dict[str, Any]) -> None:
    return None
