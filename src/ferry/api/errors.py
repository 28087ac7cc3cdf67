"""Error responses: JSON `{status_code, detail, extra?}` for every failure, never an HTML page.

Store errors map to 404/409; an unreachable database or broker is a 503, so
a client can tell "try again later" from a bug.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ferry.idempotency import KeyReused
from ferry.schemas import JOB_TYPES
from ferry.store import Conflict, NotFound

log = logging.getLogger(__name__)


def _error(status_code: int, detail: str, extra: Any = None) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status_code)


def not_found(_: Request[Any, Any, Any], exc: NotFound) -> Response[dict[str, Any]]:
    return _error(404, f"job {exc.args[0]} not found")


def conflict(_: Request[Any, Any, Any], exc: Conflict) -> Response[dict[str, Any]]:
    return _error(409, str(exc), {"status": exc.status})


def key_reused(_: Request[Any, Any, Any], exc: KeyReused) -> Response[dict[str, Any]]:
    return _error(
        409,
        "this Idempotency-Key was used with a different request in the last 24 hours",
        {"key": "Idempotency-Key", "source": "header"},
    )


def _lost_the_database(exc: DBAPIError) -> bool:
    """The database could not be reached (as opposed to a statement that failed)."""
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return (
        exc.connection_invalidated
        or isinstance(exc, OperationalError | InterfaceError)
        or exc.statement is None  # raised while connecting, before any statement
        or sqlstate.startswith(("08", "57P"))  # connection exception, shutting down
    )


def database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, DBAPIError) and not _lost_the_database(exc):
        return internal_error(request, exc)
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return _error(503, "the database is unavailable; try again shortly")


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, exc.detail, _explained(exc.extra))
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal server error")


# Litestar names a header parameter's errors after the handler's argument.
_HEADERS = {"idempotency_key": "Idempotency-Key", "last_event_id": "Last-Event-ID"}
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `([^`]+)`")


def _explained(extra: Any) -> Any:
    """Point each validation error at the exact field: msgspec names a missing or
    unknown field in its message only, and a wrong `type` tag gets the valid types."""
    if not isinstance(extra, list):
        return extra
    for error in extra:
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            continue
        named = _NAMED_FIELD.search(error["message"])
        if named:
            parent = error.get("key") if error.get("key") not in (None, "", "data") else ""
            error["key"] = f"{parent}.{named.group(1)}" if parent else named.group(1)
        if error.get("source") == "header" and error.get("key") in _HEADERS:
            error["key"] = _HEADERS[error["key"]]
        if error.get("key") == "type" and "Invalid value" in error["message"]:
            error["message"] += f"; expected one of: {', '.join(JOB_TYPES)}"
    return extra


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    NotFound: not_found,
    Conflict: conflict,
    KeyReused: key_reused,
    DBAPIError: database_unavailable,
    PoolTimeoutError: database_unavailable,
    ConnectionError: database_unavailable,
    TimeoutError: database_unavailable,
}
