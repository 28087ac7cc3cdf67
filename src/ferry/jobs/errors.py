"""What a handler raises to say how its attempt ended, besides returning."""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that another attempt cannot fix: the job fails at once, without retry."""


class JobAborted(BaseException):  # like KeyboardInterrupt: not caught by `except Exception`
    """Raised into the thread of a job that was cancelled while it ran."""


class Retry(Exception):
    """Fail this attempt and run the next one after `after_ms` (within the job's attempts)."""

    MAX_AFTER_MS = 7 * 24 * 3600 * 1000  # a week, as a create's delayMs

    def __init__(self, after_ms: int, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after_ms = min(max(0, int(after_ms)), self.MAX_AFTER_MS)
