"""The job types this process knows: each a handler of a typed payload.

A job type is a function of its typed payload and a `JobContext`, registered
under its name with the `job` decorator; it returns the job's result (anything
msgspec can encode) or raises. Ferry's built-in types are written the same way
(`ferry.jobs.builtin`); a team's own come from the modules named in FERRY_JOBS,
which the API and the workers import alike (`load`).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_type_hints

import msgspec

from ferry.jobs.errors import Retry
from ferry.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_TIME_LIMIT_S = 600
NAME_PATTERN = r"[a-z][a-z0-9_.:-]{0,31}"  # what the jobs table's `type` column holds


class JobTypeError(Exception):
    """A job type that cannot be registered, or a module of job types that cannot load."""


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    payload_type: type[Any]
    run: Callable[..., Any]
    time_limit_ms: int
    max_attempts: int | None  # None: the deployment's default
    takes_context: bool
    # Backoff between attempts (base * 2^(attempt-1), capped); None: the deployment's.
    retry_base_ms: int | None = None
    retry_cap_ms: int | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.run)


def backoff_ms(
    name: str, settings: Settings, own: tuple[int | None, int | None] = (None, None)
) -> tuple[int, int]:
    """The base and the cap of the backoff between attempts of a job of the type `name`:
    each the job's `own` if it has one, else its type's, else the deployment's."""
    job_type = REGISTRY.get(name)
    base = own[0] if own[0] is not None else job_type.retry_base_ms if job_type else None
    cap = own[1] if own[1] is not None else job_type.retry_cap_ms if job_type else None
    return (
        settings.retry_base_ms if base is None else base,
        settings.retry_cap_ms if cap is None else cap,
    )


REGISTRY: dict[str, JobType] = {}


def is_async(name: str) -> bool:
    """Whether the registered type `name` has an async handler (False if unknown)."""
    job_type = REGISTRY.get(name)
    return job_type is not None and job_type.is_async


_settings: Settings | None = None


def job(
    name: str,
    *,
    payload: type[Any] | None = None,
    time_limit_s: float = DEFAULT_TIME_LIMIT_S,
    max_attempts: int | None = None,
    retry_base_ms: int | None = None,
    retry_cap_ms: int | None = None,
) -> Callable[[F], F]:
    """Register the decorated function as the job type `name`.

    `payload`: the struct its payload must fit (by default the annotation of the
    function's first parameter; `dict` takes any JSON object). A second parameter,
    if any, is given the job's `JobContext`. `max_attempts`, `retry_base_ms` and
    `retry_cap_ms` default to the deployment's (DEFAULT_MAX_ATTEMPTS, RETRY_BASE_MS,
    RETRY_CAP_MS); a job's own `maxAttempts` overrides the type's."""

    def register(run: F) -> F:
        if not re.fullmatch(NAME_PATTERN, name):
            raise JobTypeError(
                f"job type {name!r}: a name is 1 to 32 of a-z 0-9 _ . : - (a letter first)"
            )
        if name in REGISTRY and REGISTRY[name].run is not run:
            where = _where(REGISTRY[name].run)
            raise JobTypeError(f"job type {name!r} is registered twice: {where} and {_where(run)}")
        _check_policy(name, max_attempts, retry_base_ms, retry_cap_ms)
        alike = [other for other in REGISTRY if other != name and _spelled(other) == _spelled(name)]
        if alike:
            raise JobTypeError(f"job type {name!r} differs from {alike[0]!r} only in separators")
        parameters = list(inspect.signature(run).parameters)
        if not 1 <= len(parameters) <= 2:
            raise JobTypeError(
                f"job type {name!r}: {_where(run)} must take (payload) or (payload, ctx)"
            )
        REGISTRY[name] = JobType(
            name=name,
            payload_type=payload or _payload_type(run, parameters[0]),
            run=run,
            time_limit_ms=int(time_limit_s * 1000),
            max_attempts=max_attempts,
            takes_context=len(parameters) == 2,
            retry_base_ms=retry_base_ms,
            retry_cap_ms=retry_cap_ms,
        )
        return run

    return register


# The bounds of a retry policy, a type's (checked here at registration) and a job's own
# (checked by the API's request types, ferry.service.schemas): one place for both.
MAX_ATTEMPTS_LIMIT = 25
MAX_BACKOFF_MS = Retry.MAX_AFTER_MS  # a week: a backoff's base and cap, as a Retry's delay


def _check_policy(
    name: str, max_attempts: int | None, base_ms: int | None, cap_ms: int | None
) -> None:
    if max_attempts is not None and not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise JobTypeError(f"job type {name!r}: max_attempts is 1 to {MAX_ATTEMPTS_LIMIT}")
    if any(value is not None and not 0 <= value <= MAX_BACKOFF_MS for value in (base_ms, cap_ms)):
        raise JobTypeError(
            f"job type {name!r}: retry_base_ms and retry_cap_ms are 0 to {MAX_BACKOFF_MS:,}"
            " (a week)"
        )
    if base_ms is not None and cap_ms is not None and base_ms > cap_ms:
        raise JobTypeError(f"job type {name!r}: retry_base_ms is more than retry_cap_ms")


def backoff_conflict(
    base_ms: int | None, cap_ms: int | None, inherited: tuple[int, int]
) -> Literal["base", "cap"] | None:
    """Which half of a job's own backoff is at fault when, the half it does not give taken
    from `inherited` (its type's base and cap, `backoff_ms`), its cap is below its base:
    the one it gives (the cap when it gives both); None when they fit."""
    base = inherited[0] if base_ms is None else base_ms
    cap = inherited[1] if cap_ms is None else cap_ms
    if cap >= base:
        return None
    return "base" if cap_ms is None else "cap"


class TypeDigest(msgspec.Struct, frozen=True, kw_only=True):
    """What the API and the workers must agree on about a job type (ferry.jobs.agreement):
    its payload's JSON Schema (as a digest), time limit, attempts and backoff, as
    registered (None: the deployment's), and `digest`, of them all. The deployment's
    settings (TIME_LIMITS, DEFAULT_MAX_ATTEMPTS, RETRY_*) are not part of it."""

    digest: str
    payload_schema: str
    time_limit_ms: int
    max_attempts: int | None
    retry_base_ms: int | None
    retry_cap_ms: int | None


def digest_of(job_type: JobType) -> TypeDigest:
    schema = _shape(msgspec.json.schema(job_type.payload_type))
    parts = TypeDigest(
        digest="",
        payload_schema=_sha(msgspec.json.encode(schema, order="sorted")),
        time_limit_ms=job_type.time_limit_ms,
        max_attempts=job_type.max_attempts,
        retry_base_ms=job_type.retry_base_ms,
        retry_cap_ms=job_type.retry_cap_ms,
    )
    return msgspec.structs.replace(parts, digest=_sha(msgspec.json.encode(parts)))


def _shape(schema: Any) -> Any:
    """A JSON Schema without its words (`title`, `description`: a struct's name and
    docstring), which do not change what a payload may be."""
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: {name: _shape(field) for name, field in value.items()}
        if key in ("properties", "$defs") and isinstance(value, dict)
        else _shape(value)
        for key, value in schema.items()
        if key not in ("title", "description")
    }


def digests(job_types: Mapping[str, JobType]) -> dict[str, TypeDigest]:
    return {name: digest_of(job_type) for name, job_type in job_types.items()}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]  # 64 bits: to tell versions apart


def _spelled(name: str) -> str:
    """A name without its separators: the API's struct of a type is named after it."""
    return re.sub(r"[_.:-]", "", name)


def _payload_type(run: Callable[..., Any], parameter: str) -> type[Any]:
    hint = get_type_hints(run).get(parameter, dict)
    return dict[str, Any] if hint in (dict, Any) else hint


def _where(run: Callable[..., Any]) -> str:
    return f"{run.__module__}.{run.__qualname__}"


def load(modules: tuple[str, ...]) -> dict[str, JobType]:
    """Import the built-in types and `modules` (FERRY_JOBS): every job type registered."""
    import ferry.jobs.builtin  # noqa: F401  (its modules register the built-in types)

    for module in modules:
        try:
            importlib.import_module(module)
        except JobTypeError:
            raise
        except Exception as exc:
            raise JobTypeError(f"FERRY_JOBS: {module} could not be imported: {exc!r}") from exc
    return REGISTRY


def use_settings(settings: Settings) -> None:
    """The settings the handlers of this process read (their SMTP server, say)."""
    global _settings
    _settings = settings


def worker_settings() -> Settings:
    """The settings of the worker this process's handlers run in."""
    if _settings is None:
        raise RuntimeError("no Ferry worker is installed in this process")
    return _settings
