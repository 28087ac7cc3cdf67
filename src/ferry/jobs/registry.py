"""The job types this process knows: each a handler of a typed payload.

A handler is a plain function of its typed payload that returns the job's
result (or raises). `job_handler` registers it under its type; a worker
declares every registered handler as a Dramatiq actor (`ferry.worker.actors`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ferry.jobs.payloads import PAYLOAD_TYPES
from ferry.settings import Settings

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Handler:
    job_type: str
    payload_type: type[Any]
    run: Callable[[Any], Any]
    time_limit_ms: int


HANDLERS: dict[str, Handler] = {}
_settings: Settings | None = None


def job_handler(
    job_type: str, *, time_limit_ms: int
) -> Callable[[Callable[[P], Any]], Callable[[P], Any]]:
    def register(run: Callable[[P], Any]) -> Callable[[P], Any]:
        HANDLERS[job_type] = Handler(job_type, PAYLOAD_TYPES[job_type], run, time_limit_ms)
        return run

    return register


def use_settings(settings: Settings) -> None:
    """The settings the handlers of this process read (their SMTP server, say)."""
    global _settings
    _settings = settings


def worker_settings() -> Settings:
    """The settings of the worker this process's handlers run in."""
    if _settings is None:
        raise RuntimeError("no Ferry worker is installed in this process")
    return _settings
