"""Configuration from the environment (and a `.env` file), read once at start-up."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated

import msgspec
from dotenv import load_dotenv

EMBEDDED_DATABASE_URL = "sqlite+aiosqlite:///ferry.db"
FINISHED = ("completed", "failed", "cancelled")  # the statuses a retention applies to


class Settings(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """Every knob Ferry has. Field names are the environment variables, lower-cased."""

    database_url: str = EMBEDDED_DATABASE_URL
    # No REDIS_URL means the embedded default: an in-process broker and event bus.
    redis_url: str | None = None
    # Prefix of every Redis key Ferry writes (queues included), so that several
    # deployments or test runs can share one Redis server.
    redis_namespace: str = "ferry"
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: str = ""
    log_level: str = "INFO"
    # json, text, or auto: text on the embedded default (a terminal), json otherwise.
    log_format: str = "auto"
    max_body_bytes: int = 1024 * 1024
    db_pool_size: int = 10
    # Worker: how many status transitions one tick may write, and how long a
    # tick waits for more to arrive before it writes (0: a tick is one write,
    # and what arrives during it goes into the next).
    batch_size: int = 500
    batch_tick_ms: int = 0
    default_max_attempts: int = 5
    # Backoff between attempts: base * 2^(attempt-1), capped, with jitter.
    retry_base_ms: int = 2_000
    retry_cap_ms: int = 32_000
    # Per-type time limits overriding the handlers' own, e.g. "sleep=1000,webhook=5000".
    time_limits: str = ""
    # The team's own job types: importable modules, comma-separated, read by the API
    # and the workers alike (docs/jobs.md).
    ferry_jobs: str = ""
    # Async handlers running at once in one worker process (on its job loop); a
    # worker thread waits for a free slot before it claims another async job.
    async_jobs_per_worker: Annotated[int, msgspec.Meta(ge=1)] = 1000
    # A handler's result larger than this (JSON bytes) fails its attempt.
    max_result_bytes: int = 64 * 1024
    # A RUNNING job's worker renews its lease every heartbeat; a job whose lease
    # is older than lease_ms is presumed orphaned and handed back to PENDING.
    heartbeat_ms: int = 2_000
    lease_ms: int = 30_000
    # The recovery pass: how often, and how overdue a PENDING job must be before
    # the pass checks that a queue still holds its message.
    recovery_interval_ms: int = 5_000
    recovery_grace_ms: int = 5_000
    # Jobs created due further ahead than this wait in the database, not in Redis,
    # until the dispatcher sends them; `runAt` may be at most the horizon ahead.
    park_after_ms: Annotated[int, msgspec.Meta(ge=0)] = 60_000
    run_at_horizon_ms: Annotated[int, msgspec.Meta(ge=1)] = 365 * 24 * 3600 * 1000
    # Schedules: how often each worker process looks for new or changed ones (it wakes
    # for a due time anyway), and how late a due time may still fire; older ones were
    # missed (no worker ran), and the schedule's `missed` policy decides.
    schedule_tick_ms: Annotated[int, msgspec.Meta(ge=10)] = 1_000
    # (At least a second: a due time always fires a few milliseconds late.)
    schedule_grace_ms: Annotated[int, msgspec.Meta(ge=1_000)] = 10_000
    # How long finished jobs are kept before the recovery pass deletes them: a number
    # with its unit ("7d", "12h", "30m", "90s"), or "0" to keep them for ever. A tenant's
    # limits may set its own (retentionCompletedMs, ...).
    retention_completed: str = "7d"
    retention_failed: str = "30d"
    retention_cancelled: str = "30d"
    # Fair scheduling (on Redis): jobs wait in per-tenant queues and are fed in
    # weighted round robin into the shared queue, kept at most this deep (a
    # newcomer waits behind one round of the tenants plus this many jobs).
    # Off: one first-in-first-out queue.
    fair_scheduling: bool = True
    fair_queue_depth: int = 128
    # The most jobs of one tenant and type one message carries, when a turn moves
    # several into an empty queue; a worker runs them one after another (1: off).
    bundle_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50
    # Live events: how many each tenant keeps for replay (Last-Event-ID), how long
    # an idle tenant's history lives, and how many may wait for one slow subscriber
    # (beyond that its oldest are dropped, then read back from the history).
    event_history: int = 10_000
    event_history_ttl_s: int = 86_400
    event_backlog: int = 1_000
    # The most of a tenant's events one pub/sub message carries (Redis only): an append
    # publishes each tenant's events together, and an API process reads a message at a
    # time (1: one a message, what API processes of earlier releases read).
    events_per_message: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    sse_heartbeat_ms: int = 15_000
    sse_retry_ms: int = 2_000
    ws_max_subscriptions: int = 100
    # A live subscriber whose write has waited this long (it stopped reading, and the
    # buffers between are full) is cut: WebSocket closed with 1013, SSE stream ended.
    live_write_timeout_ms: int = 10_000
    # A WebSocket that answers no ping within this long is closed (a client that
    # stopped reading answers none, whatever room its buffers still have).
    ws_ping_ms: int = 10_000
    # Tenant API keys: "on" requires `Authorization: Bearer <key>` everywhere but
    # /health and /schema; the admin key creates and revokes tenant keys.
    ferry_auth: str = "off"
    ferry_admin_key: str | None = None
    smtp_url: str | None = None
    outbox_path: str = "outbox.mbox"
    webhook_secret: str | None = None
    # Webhooks to loopback, private, link-local (cloud metadata) and other
    # non-public addresses are refused unless this is on (the SSRF guard).
    webhook_allow_private: bool = False

    def __post_init__(self) -> None:
        self.retention_ms  # noqa: B018  (checked at start, not at the first pass)

    @cached_property
    def retention_ms(self) -> dict[str, int | None]:
        """How long finished jobs are kept, by status (None: for ever)."""
        return {
            status.upper(): duration_ms(
                getattr(self, f"retention_{status}"), f"RETENTION_{status.upper()}"
            )
            for status in FINISHED
        }

    @cached_property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def job_modules(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.ferry_jobs.split(",") if name.strip())

    @cached_property
    def time_limit_overrides(self) -> dict[str, int]:
        pairs = (item.split("=", 1) for item in self.time_limits.split(",") if "=" in item)
        return {name.strip(): int(value) for name, value in pairs}

    @property
    def auth_on(self) -> bool:
        return self.ferry_auth.lower() in ("on", "true", "1")

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def event_mark_ttl_ms(self) -> int:
        """How long the event log remembers that a change's events were appended: far
        longer than the recovery pass takes to look at the change's outbox row (its
        interval plus its grace). Only an outage of every worker longer than this gets
        events appended twice."""
        return max(600_000, 10 * (self.recovery_interval_ms + self.recovery_grace_ms))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str, name: str = "a duration") -> int | None:
    """A duration with its unit ("7d", "12h", "30m", "90s", "500ms") in ms; "0" is None
    (never). A bare number is refused: "7" would delete everything older than 7 ms or
    7 s, whichever was meant."""
    if text.strip() == "0":
        return None
    number = text.strip().rstrip("smhd")
    unit = text.strip()[len(number) :]
    if not number.isdigit() or unit not in _UNITS_MS:
        raise ValueError(f"{name}: {text!r} is not a duration such as 7d, 12h, 30m or 90s")
    return int(number) * _UNITS_MS[unit] or None


def load_settings(env_file: str | Path | None = ".env", **overrides: object) -> Settings:
    """Build settings from `os.environ` (a `.env` file fills in what is unset)."""
    if env_file is not None:
        load_dotenv(env_file, override=False)
    fields = {name for name in Settings.__struct_fields__}
    values: dict[str, object] = {
        name.lower(): value
        for name, value in os.environ.items()
        if name.lower() in fields and value != ""
    }
    values.update(overrides)
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"ferry: bad configuration: {exc}") from exc
