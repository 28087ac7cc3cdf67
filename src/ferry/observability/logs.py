"""Logging: one JSON object per line in production, readable lines in development.

Every record carries the ids of what it is about when they are known: the
request (`X-Request-ID`, from nginx or made here) in the API, the job and its
tenant in a worker thread. They travel in context variables, so a handler's own
log lines get them too.

No line carries an API key: `?token=` values (the dashboard's EventSource has no
other way to send its key, and uvicorn logs request lines whole) and bearer
credentials are redacted from every record, uvicorn's access log included.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from ferry.settings import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_ids: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "job", default=None
)

_encode = msgspec.json.Encoder().encode

# The value of `token=` (and `access_token=`...) up to the end of its query parameter,
# also in a percent-encoded URL; `Bearer <key>` and the WebSocket subprotocol `bearer.<key>`.
_SECRETS = re.compile(
    r"(?i)(?P<name>token(?:=|%3D))(?:(?!%26)[^&\s\"'#])+|(?P<scheme>\bbearer[ .])[\w.~+/=-]+"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """`text` with every API key it shows replaced by `[redacted]`."""
    return _SECRETS.sub(lambda m: (m["name"] or m["scheme"]) + REDACTED, text)


class RedactFilter(logging.Filter):
    """Removes keys from a record's message and exception text before any handler
    formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: log the format alone
            record.msg, record.args = redact(str(record.msg)), None
            return True
        if (clean := redact(message)) != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Puts the current request id, job id and tenant id on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (rid := request_id.get()) is not None:
            record.request_id = rid
        if (job := job_ids.get()) is not None:
            record.job_id, record.tenant_id = job
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("request_id", "job_id", "tenant_id")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return _encode(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{name}={value}"
            for name in JsonFormatter.FIELDS
            if (value := getattr(record, name, None))
        ]
        return f"{line} [{' '.join(ids)}]" if ids else line


def configure(settings: Settings) -> None:
    """Root logging for a Ferry process (uvicorn's and Dramatiq's loggers included)."""
    json = settings.log_format == "json" or (
        settings.log_format == "auto" and not settings.embedded
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
