"""Ferry: a real-time, multi-tenant background job service.

What a team's own job types use (docs/jobs.md)::

    from ferry import JobContext, PermanentError, Retry, job
"""

from ferry.jobs.context import JobContext
from ferry.jobs.errors import PermanentError, Retry
from ferry.jobs.registry import job

__all__ = ["JobContext", "PermanentError", "Retry", "job"]
