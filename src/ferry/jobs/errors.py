"""What a handler raises to say how its attempt ended, besides returning."""

from __future__ import annotations


class PermanentError(Exception):
    """A failure that another attempt cannot fix: the job fails at once, without retry."""


class JobAborted(BaseException):  # like KeyboardInterrupt: not caught by `except Exception`
    """Raised into the thread of a job that was cancelled while it ran."""
