"""A second module registering a name `jobs` registers too: loading both is an error."""

from __future__ import annotations

from typing import Any

from ferry import job


@job("resize")
def resize_again(payload: dict[str, Any]) -> None:
    return None
