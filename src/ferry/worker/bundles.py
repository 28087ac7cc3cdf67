"""Messages that carry several jobs: which types go several to a message, and how many
of a message one worker thread runs.

The fair queue moves a turn's run of one job type as one message of up to
`BUNDLE_SIZE` jobs (`fair.lua`), for the types some worker has measured short
(`Durations.short`, told to the queue by each worker's feeder): the first job
is the message's own, the others ride in its `more` option. One thread runs
them one after another: one claim for all of them, one wait, one ack; each
keeps its own time limit, outcome and events. That is where the speed comes
from, and also the risk: a job waits for the ones before it. So a thread runs
only as many as its type's jobs have taken about `BUDGET_S` to run (`split`),
and sends the others back to the head of Dramatiq's queue at once, one job a
message, for the other threads. A bundle that runs past the budget anyway (a
job far slower than its type's average), or whose worker stops meanwhile,
gives back the claims of the jobs it has not started, and sends them the
same way. The thread can do that only between jobs: when one job runs long,
the heartbeat gives back the jobs that have waited behind it past `OVERDUE_S`
(`ClaimsAhead.overdue`), and the thread skips them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from ferry.queue.group_ack import AckHold

T = TypeVar("T")

# How long the jobs of one message may take together before the rest go to other
# threads: a job waits for the ones before it in its message at most about this long.
BUDGET_S = 0.1
SHORT_S = BUDGET_S / 4  # a type whose jobs take this long at most goes several a message
# A job that has waited this long in its message is stuck behind a slow one: the
# heartbeat gives it back for another thread (within a heartbeat of this).
OVERDUE_S = 10 * BUDGET_S
TYPICAL_WEIGHT = 0.05  # of the latest job in a moving average of durations


def moved(average: float | None, latest: float) -> float:
    """A moving average of durations after `latest` (`latest` itself when there was none)."""
    return latest if average is None else average + TYPICAL_WEIGHT * (latest - average)


class Durations:
    """How long each job type's sync jobs take: a moving average per type."""

    def __init__(self) -> None:
        self._typical: dict[str, float] = {}

    def add(self, job_type: str, seconds: float) -> None:
        self._typical[job_type] = moved(self._typical.get(job_type), seconds)

    def typical(self, job_type: str) -> float | None:
        """None until one job of the type has run."""
        return self._typical.get(job_type)

    def short(self) -> list[str]:
        """The types of which a bundle's thread runs several (the fair queue bundles them)."""
        return [name for name, typical in list(self._typical.items()) if typical <= SHORT_S]


def split(jobs: Sequence[T], typical_s: float | None) -> tuple[list[T], list[T]]:
    """(the jobs one thread runs, the jobs sent back one a message): as many as fit in
    `BUDGET_S` at `typical_s` each, at least the first; the first alone when the
    type's duration is unknown (None)."""
    if typical_s is None:
        count = 1
    else:
        count = max(1, min(len(jobs), int(BUDGET_S / max(typical_s, 1e-6))))
    return list(jobs[:count]), list(jobs[count:])


class BundleHold:
    """The ack of a message of several jobs, held until each of them is recorded or
    given up: the last `release()` lets the ack go and runs `last`."""

    __slots__ = ("_hold", "_last", "_left", "_lock")

    def __init__(self, count: int, hold: AckHold, last: Callable[[], None]) -> None:
        self._left = count
        self._hold = hold
        self._last = last
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left != 0:
                return
        try:
            self._last()
        finally:
            self._hold.release()
