"""The pauses a worker process holds jobs by (`ferry.db.pauses`), read every heartbeat.

A message whose tenant or job type is paused is skipped before its job is
claimed: the job stays PENDING, with no message, until a resume sends it again.
Until a pause is read (up to a heartbeat after it: the API answers a pause only
then), jobs of its tenant may still start; a job claimed before it was read runs
to its end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.pauses import EVERY_TYPE, all_pauses

log = logging.getLogger(__name__)


class Pauses:
    def __init__(self) -> None:
        # Swapped whole, never changed in place: the threads read it without a lock.
        self._held: frozenset[tuple[str, str]] = frozenset()

    def holds(self, tenant_id: str | None, job_type: str) -> bool:
        """Whether a job of this tenant and type is held now."""
        held = self._held
        return bool(held) and ((tenant_id, EVERY_TYPE) in held or (tenant_id, job_type) in held)

    def replace(self, held: set[tuple[str, str]]) -> None:
        self._held = frozenset(held)

    async def read(self, engine: Callable[[], AsyncEngine]) -> None:
        async with engine().connect() as conn:
            self.replace(await all_pauses(conn))

    async def run(self, engine: Callable[[], AsyncEngine], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.read(engine)
            except Exception:
                log.exception("reading the pauses failed; keeping the last ones read")
