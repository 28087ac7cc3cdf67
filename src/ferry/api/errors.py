"""Error responses: JSON `{status_code, detail, extra?}` for every failure, never an HTML page.

Store errors map to 404/409; an unreachable database or broker is a 503, so
a client can tell "try again later" from a bug.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, get_args

from litestar import Request, Response
from litestar.exceptions import HTTPException
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ferry.cron import Missed
from ferry.db.engine import connection_lost
from ferry.db.idempotency import KeyReused
from ferry.db.jobs import Conflict, NotFound
from ferry.db.models import JobStatus
from ferry.db.schedules import NameTaken
from ferry.fields import in_words
from ferry.jobs.payloads import HttpMethod, Operation
from ferry.jobs.registry import REGISTRY

log = logging.getLogger(__name__)


def _error(
    status_code: int, detail: str, extra: Any = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status_code, headers=headers)


def not_found(_: Request[Any, Any, Any], exc: NotFound) -> Response[dict[str, Any]]:
    return _error(404, str(exc))


def conflict(_: Request[Any, Any, Any], exc: Conflict) -> Response[dict[str, Any]]:
    return _error(409, str(exc), {"status": exc.status})


def name_taken(_: Request[Any, Any, Any], exc: NameTaken) -> Response[dict[str, Any]]:
    return _error(409, str(exc), {"key": "name", "source": "body"})


def key_reused(_: Request[Any, Any, Any], exc: KeyReused) -> Response[dict[str, Any]]:
    return _error(
        409,
        "this Idempotency-Key was used with a different request in the last 24 hours",
        {"key": "Idempotency-Key", "source": "header"},
    )


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if not connection_lost(exc):
        return internal_error(request, exc)
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "the database is unavailable; try again shortly")


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):
        extra = _explained(exc.extra, request.scope.get("route_handler"))
        # The exception's headers too: a 405's Allow, a 401's WWW-Authenticate.
        return _error(exc.status_code, exc.detail, extra, exc.headers)
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal server error")


# Litestar names a query or header parameter's errors after the handler's argument.
_RENAMED = ("query", "header", "cookie")
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `([^`]+)`")
# A struct's own check about one of its fields (ferry.service.schemas.field_error).
_FIELD_CHECK = re.compile(r"`([^`]+)`: (.*)", re.DOTALL)
# The valid values of each enumerated field, by the field's name.
_CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "status": lambda: tuple(JobStatus),
    "type": lambda: tuple(REGISTRY),  # the job types registered in this process
    "method": lambda: get_args(HttpMethod),
    "operation": lambda: get_args(Operation),
    "missed": lambda: tuple(Missed),
}


def _wire_name(handler: Any, key: Any) -> Any:
    """The name a client gives the handler's argument `key` (`tenantId` for `tenant_id`)."""
    parameters = handler.parsed_fn_signature.parameters if handler is not None else {}
    parameter = parameters.get(key) if isinstance(key, str) else None
    return getattr(parameter and parameter.kwarg_definition, "name", None) or key


def _explained(extra: Any, handler: Any = None) -> Any:
    """Point each validation error at the exact field and say what it expects: msgspec
    names a missing or unknown field in its message only, quotes regexes, and lists
    no valid values for an enumerated field."""
    if not isinstance(extra, list):
        return extra
    for error in extra:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            continue
        if (error.get("key"), error["message"]) == ("data", "'data'"):
            # Litestar's word for a route's body that was not sent.
            error.pop("key")
            error["message"] = "a JSON body is required (Content-Type: application/json)"
            continue
        parent = error.get("key") if error.get("key") not in (None, "", "data") else ""
        if named := _NAMED_FIELD.search(error["message"]):
            error["key"] = f"{parent}.{named.group(1)}" if parent else named.group(1)
        elif checked := _FIELD_CHECK.fullmatch(error["message"]):
            error["key"] = f"{parent}.{checked.group(1)}" if parent else checked.group(1)
            error["message"] = checked.group(2)
        if error.get("source") in _RENAMED:
            error["key"] = _wire_name(handler, error.get("key"))
        error["message"] = in_words(error["message"])
        field = str(error.get("key", "")).rpartition(".")[2]
        if field in _CHOICES and error["message"].startswith(("Invalid value", "Invalid enum")):
            error["message"] += f"; expected one of: {', '.join(_CHOICES[field]())}"
    return extra


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    NotFound: not_found,
    Conflict: conflict,
    KeyReused: key_reused,
    NameTaken: name_taken,
    DBAPIError: database_unavailable,
    PoolTimeoutError: database_unavailable,
    ConnectionError: database_unavailable,
    TimeoutError: database_unavailable,
}
