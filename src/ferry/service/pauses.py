"""Pausing and resuming a tenant, or one of its job types: commit, then send.

A pause only holds: the workers skip the held jobs' messages (`ferry.worker.pauses`).
A resume lifts it, then sends the jobs it held again (the longest due first, up to
`RESEND_LIMIT`; the recovery pass sends any more, once they are overdue).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from ferry.db import pauses
from ferry.queue.sender import Sender


async def pause(session: AsyncSession, tenant_id: str, job_type: str | None) -> None:
    await pauses.pause(session, tenant_id, job_type or pauses.EVERY_TYPE)
    await session.commit()


async def resume(
    session: AsyncSession, sender: Sender, tenant_id: str, job_type: str | None
) -> int:
    """Lift the pause; how many held jobs were sent again."""
    await pauses.resume(session, tenant_id, job_type)
    await session.commit()
    held = await pauses.held_jobs(session, tenant_id, job_type)
    await session.commit()  # no transaction left open while the messages go
    await sender.send(held)
    return len(held)
