"""Cron schedules: when one is due, in its time zone, and what to fire after downtime.

Expressions are read by cronsim, which follows Debian's cron (5 fields, or 6 with
seconds first). Across DST changes it does what cron does: a time the clock skips
fires right after the change, a fixed time the clock repeats fires once, and a
time of every hour or minute fires in both of the repeated hours.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

ONE_MICROSECOND = timedelta(microseconds=1)
FIELDS = "minute hour day-of-month month day-of-week"


class Missed(enum.StrEnum):
    """What a schedule does about due times that passed while nothing could fire them."""

    SKIP = "skip"  # nothing: the next run is the next due time
    ONCE = "once"  # one catch-up run, for the latest of them


class CronError(ValueError):
    """An expression or a time zone that names no schedule; the message says why."""


def time_zone(name: str) -> ZoneInfo:
    # Only the database's names: "localtime" would be each host's own clock setting.
    if name not in _zone_names():
        raise CronError(f"{name!r} is not a time zone of the IANA database")
    return ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    # The files beside the zones that are not zones of their own.
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron expression in a time zone. Times in and out are aware; out, in UTC."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, zone: str = "UTC") -> Cron:
        """The schedule, or CronError: for a bad expression, a bad zone, or an
        expression that never matches (the 30th of February)."""
        cron = cls(" ".join(expression.split()), time_zone(zone))
        try:
            cron.after(datetime.now(UTC))
        except CronSimError as exc:
            problem = str(exc).lower()
            if "number of fields" in problem:
                problem += f" (5: {FIELDS}; or 6, with seconds first)"
            raise CronError(f"{expression!r}: {problem}") from None
        except StopIteration:
            raise CronError(f"{expression!r} matches no time in the next 50 years") from None
        return cron

    def after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (StopIteration: none)."""
        return next(self._after(moment))

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        """The `count` due times after `moment` (fewer if it stops matching)."""
        return list(islice(self._after(moment), count))

    def latest(self, moment: datetime) -> datetime | None:
        """The last due time at or before `moment`, however long ago."""
        # Backwards cronsim starts strictly before its (whole-second) start, unless the
        # start has a fraction of a second: then the second itself counts. In the hour
        # the clock repeats it can answer a time too early: the walk forward mends it.
        start = (moment + ONE_MICROSECOND).astimezone(self.zone)
        try:
            latest = next(CronSim(self.expression, start, reverse=True)).astimezone(UTC)
        except StopIteration:
            return None
        for later in self._after(latest):
            if later > moment:
                break
            latest = later
        return latest

    def describe(self) -> str | None:
        """In words ("At 09:00 on Monday through Friday"), when cronsim can say it."""
        try:
            return CronSim(self.expression, datetime.now(self.zone)).explain()
        except Exception:  # explain() covers most expressions, not all of them
            return None

    def _after(self, moment: datetime) -> Iterator[datetime]:
        """The due times after `moment`, in UTC. In the hour the clock repeats cronsim can
        answer a time of the first pass while asked from the second: those are left out."""
        for time in CronSim(self.expression, moment.astimezone(self.zone)):
            if (utc := time.astimezone(UTC)) > moment:
                yield utc


@dataclass(frozen=True, slots=True)
class Firing:
    """What a due schedule does now: fire for each of `due` (oldest first), then wait for
    `next`. `missed`: due times passed that get no run of their own."""

    due: list[datetime]
    next: datetime
    missed: bool


MAX_LATE_RUNS = 100  # due times fired at once for one schedule, at most


def firing(
    cron: Cron, next_due: datetime, now: datetime, missed: Missed, grace: timedelta
) -> Firing:
    """A schedule whose next due time `next_due` has come (`<= now`): every due time
    since then that is at most `grace` late fires (a slow tick or a quick restart loses
    none). Older ones were missed (nothing could fire them in time): under `skip` they
    get no run, under `once` the latest of them gets one."""
    cutoff = now - grace
    due: list[datetime] = []
    on_time = next_due  # the first due time within the grace (if it is at most now)
    unrun = False
    if next_due < cutoff:
        latest_missed = cron.latest(cutoff - ONE_MICROSECOND) or next_due
        if missed is Missed.ONCE:
            due.append(latest_missed)
        unrun = missed is Missed.SKIP or latest_missed > next_due
        on_time = cron.after(latest_missed)
    while on_time <= now and len(due) < MAX_LATE_RUNS:
        due.append(on_time)
        on_time = cron.after(on_time)
    return Firing(due, cron.after(now), missed=unrun)
