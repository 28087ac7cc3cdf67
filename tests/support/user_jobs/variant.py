"""Another version of the team's job types, for the tests of an API and workers that
disagree on them (tests/integration/jobs/test_type_agreement.py): `resize`'s payload
has gained a required field, the other types of `jobs` are gone, and `thumbnail` is
new. Nothing else imports it."""

from __future__ import annotations

from typing import Any

import msgspec

from ferry import JobContext, job


class Resize(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    url: str
    width: int
    height: int  # new in this version
    keep_ratio: bool = True


@job("resize", payload=Resize, time_limit_s=60, max_attempts=3)
def resize(payload: Resize, ctx: JobContext) -> dict[str, Any]:
    return {"url": payload.url, "width": payload.width, "height": payload.height}


@job("thumbnail")
def thumbnail(payload: dict[str, Any]) -> None:
    return None
