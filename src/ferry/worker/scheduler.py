"""The scheduler: every worker process fires the schedules that are due.

Each firing is one transaction (`ferry.db.schedules`): the due schedules are
locked, each moves on to its next due time, and the jobs of the due times are
inserted. Schedulers in several processes skip the rows another holds, and the
jobs' unique (schedule, due time) refuses a second job for a due time, so a
schedule fires once per due time however many processes run. Everything it
needs is in PostgreSQL: a Redis loss or a restart loses no firing, and the
recovery pass sends a fired job whose message was lost.

Every due time fires, late by up to `SCHEDULE_GRACE_MS` (a slow tick, a quick
restart). Due times older than that were missed, while no worker could fire
them: a schedule's `missed` policy gives them no run (`skip`) or one for the
latest (`once`), never one each (`ferry.cron.firing`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from cronsim import CronSimError
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.cron import Cron, CronError, Firing, Missed, firing, time_zone
from ferry.db import schedules
from ferry.db.models import utcnow
from ferry.db.schedules import Fired
from ferry.events.event import pending_events
from ferry.events.log import Committed, EventLog
from ferry.jobs.registry import REGISTRY
from ferry.observability.metrics import recorder
from ferry.queue.sender import Sender
from ferry.settings import Settings

log = logging.getLogger(__name__)

# A little past a due time, so that the schedule is due when the scheduler looks.
LATE_S = 0.005
BUSY_WAIT_S = 0.05
UNREADABLE_RETRY = timedelta(minutes=1)


class Scheduler:
    def __init__(
        self,
        engine: Callable[[], AsyncEngine],
        sender: Sender,
        events: EventLog | None,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.events = events
        self.settings = settings
        # The longest it sleeps: a schedule created or changed meanwhile is seen by then.
        self.tick_s = settings.schedule_tick_ms / 1000
        self.grace = timedelta(milliseconds=settings.schedule_grace_ms)
        self.fired = 0  # jobs this scheduler created (tests, logs)

    async def run(self) -> None:
        while True:
            try:
                wait_s = await self.fire_due()
            except Exception:
                log.exception("firing the due schedules failed; trying again in a tick")
                wait_s = self.tick_s
            await asyncio.sleep(wait_s)

    async def fire_due(self) -> float:
        """Fire the schedules due now, then announce their jobs; how long to wait (in
        seconds) until the next due time, at most a tick."""
        now = utcnow()
        async with self.engine().begin() as conn:
            rows = await schedules.due(conn, now)
            decided = [(row, self._firing(row, now)) for row in rows]
            fired = [
                Fired(row, due, self._max_attempts(row))
                for row, decision in decided
                for due in decision.due
            ]
            made, mark = await schedules.insert_fired(conn, fired, now)
            # Oldest first: a schedule's last job is its latest due time's.
            job_of = {one.schedule.id: (one.due, job.id) for one, job in made}
            for row, decision in decided:
                await schedules.move_on(conn, row.id, decision.next, now, job_of.get(row.id))
            next_due = await schedules.next_due(conn)
        for row, decision in decided:
            if decision.missed:
                log.warning(
                    "schedule %s (%s) missed due times while no worker could fire them (%s)",
                    row.name, row.id, row.missed,
                )  # fmt: skip
        jobs = [job for _, job in made]
        if jobs:
            self.fired += len(jobs)
            for job in jobs:
                recorder.inc("ferry_jobs_created", job.tenant_id, job.type)
            # As for any create; what fails is made up for by the recovery pass.
            await self.sender.announce(
                self.events, Committed(pending_events(jobs, now), mark), jobs
            )
        if len(rows) == schedules.DUE_BATCH:
            return 0  # more are due
        if next_due is None:
            return self.tick_s
        # Due already, yet not fired here: another process holds it (or it cannot be
        # read); look again a little later rather than at once.
        until_due = max((next_due - utcnow()).total_seconds() + LATE_S, BUSY_WAIT_S)
        return min(self.tick_s, until_due)

    def _firing(self, row: Row[Any], now: datetime) -> Firing:
        """What the due schedule fires. One this host cannot read (a time zone it does not
        know) fires nothing and is looked at again in a while; the others fire all the
        same."""
        try:
            cron = Cron(row.cron, time_zone(row.timezone))
            return firing(cron, row.next_run_at, now, Missed(row.missed), self.grace)
        except (CronError, CronSimError, StopIteration, ValueError) as exc:
            log.error("schedule %s (%s) cannot fire here: %s", row.name, row.id, exc)
            return Firing([], now + UNREADABLE_RETRY, missed=False)

    def _max_attempts(self, row: Row[Any]) -> int:
        job_type = REGISTRY.get(row.job_type)
        return int(
            row.max_attempts
            or (job_type.max_attempts if job_type else None)
            or self.settings.default_max_attempts
        )
