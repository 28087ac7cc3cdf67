"""Pausing and resuming a tenant, or one of its job types: commit, then send.

A pause only holds: the workers skip the held jobs' messages (`ferry.worker.pauses`).
A resume lifts it, then sends the jobs it held again (the longest due first, up to
`RESEND_LIMIT`; the recovery pass sends any more, once they are overdue). It sends
them a heartbeat later, once every worker has read that the pause is gone: a worker
still holding them would skip their messages again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from ferry.db import pauses
from ferry.db.jobs import Enqueued
from ferry.queue.sender import Sender

log = logging.getLogger(__name__)

_sending: set[asyncio.Task[None]] = set()  # kept until done: the loop holds weak references


async def pause(session: AsyncSession, tenant_id: str, job_type: str | None) -> None:
    await pauses.pause(session, tenant_id, job_type or pauses.EVERY_TYPE)
    await session.commit()


async def resume(
    session: AsyncSession, sender: Sender, tenant_id: str, job_type: str | None, after_s: float
) -> int:
    """Lift the pause; how many held jobs will be sent again, `after_s` from now (none
    if no pause was lifted)."""
    lifted = await pauses.resume(session, tenant_id, job_type)
    await session.commit()
    if not lifted:
        return 0
    held = await pauses.held_jobs(session, tenant_id, job_type)
    await session.commit()  # no transaction left open meanwhile
    if held:
        task = asyncio.create_task(_send_later(sender, held, after_s))
        _sending.add(task)
        task.add_done_callback(_sending.discard)
    return len(held)


async def _send_later(sender: Sender, jobs: Sequence[Enqueued], after_s: float) -> None:
    await asyncio.sleep(after_s)
    await sender.send(jobs)  # a failure is logged; the recovery pass sends them then
