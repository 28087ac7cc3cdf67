"""Registering job types: the `job` decorator, `load` of FERRY_JOBS modules, how a
handler's `Retry` sets the next attempt's delay, the bounds of a retry policy (a type's
and a job's own), and a type's digest. No servers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from ferry import JobContext, Retry, job
from ferry.db.models import JobStatus, utcnow
from ferry.db.transitions import ClaimedJob
from ferry.jobs import registry
from ferry.jobs.registry import (
    MAX_BACKOFF_MS,
    REGISTRY,
    JobTypeError,
    backoff_conflict,
    digest_of,
    load,
)
from ferry.worker.outcome import decide

USER_MODULES = ("tests.support.user_jobs.jobs", "tests.support.user_jobs.duplicate")


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Each test sees the registry as it was and leaves it so: what it registers (its
    own types, the fixture package's) is removed, and the fixture modules are forgotten
    so that the next import registers them again."""
    before = dict(REGISTRY)
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(before)
        for module in [name for name in sys.modules if name.startswith("tests.support.user_")]:
            if module != "tests.support.user_jobs":
                del sys.modules[module]


class Thumbnail(msgspec.Struct, rename="camel"):
    url: str
    max_width: int


def test_the_payload_type_is_the_first_parameters_annotation() -> None:
    @job("test.thumbnail")
    def thumbnail(payload: Thumbnail, ctx: JobContext) -> None:
        return None

    registered = REGISTRY["test.thumbnail"]
    assert registered.payload_type is Thumbnail
    assert registered.takes_context and not registered.is_async
    assert registered.run is thumbnail
    assert msgspec.convert({"url": "u", "maxWidth": 3}, registered.payload_type) == Thumbnail(
        "u", 3
    )


def test_an_explicit_payload_type_wins_and_the_options_are_kept() -> None:
    @job("test.explicit", payload=Thumbnail, time_limit_s=1.5, max_attempts=7)
    async def explicit(payload: Any) -> None:
        return None

    registered = REGISTRY["test.explicit"]
    assert registered.payload_type is Thumbnail
    assert (registered.time_limit_ms, registered.max_attempts) == (1500, 7)
    assert registered.is_async and not registered.takes_context


def test_the_defaults() -> None:
    @job("test.defaults")
    def defaults(payload: Thumbnail) -> None:
        return None

    registered = REGISTRY["test.defaults"]
    assert registered.time_limit_ms == registry.DEFAULT_TIME_LIMIT_S * 1000
    assert registered.max_attempts is None  # the deployment's default


@pytest.mark.parametrize("annotation", ["dict", "any", "none"])
def test_a_dict_payload_takes_any_object(annotation: str) -> None:
    if annotation == "dict":

        @job("test.anything")
        def anything(payload: dict) -> None:  # type: ignore[type-arg]  # as a user may write it
            return None

    elif annotation == "any":

        @job("test.anything")
        def anything(payload: Any) -> None:
            return None

    else:

        @job("test.anything")
        def anything(payload) -> None:  # type: ignore[no-untyped-def]  # no annotation at all
            return None

    payload_type = REGISTRY["test.anything"].payload_type
    body = {"any": ["thing", 1, None], "nested": {"x": 1.5}}
    assert msgspec.convert(body, payload_type) == body
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(["not", "an", "object"], payload_type)


def test_registering_the_same_function_again_is_harmless() -> None:
    def same(payload: dict[str, Any]) -> None:
        return None

    job("test.same")(same)
    job("test.same")(same)  # a module imported twice, say
    assert REGISTRY["test.same"].run is same


def test_a_name_registered_twice_names_both_places() -> None:
    @job("test.twice")
    def first(payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(JobTypeError) as raised:

        @job("test.twice")
        def second(payload: dict[str, Any]) -> None:
            return None

    message = str(raised.value)
    assert "'test.twice' is registered twice" in message
    assert f"{__name__}.{first.__qualname__}" in message
    assert f"{__name__}.test_a_name_registered_twice_names_both_places.<locals>.second" in message
    assert REGISTRY["test.twice"].run is first  # the first one stays


@pytest.mark.parametrize(
    "name", ["", "Resize", "9lives", "_private", "has space", "x" * 33, "émoji", "a/b", "abc\n"]
)
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(JobTypeError, match="a name is 1 to 32 of a-z 0-9"):

        @job(name)
        def handler(payload: dict[str, Any]) -> None:
            return None

    assert name not in REGISTRY


@pytest.mark.parametrize("name", ["a", "x" * 32, "team.resize", "crm:sync-2", "a_b"])
def test_good_names_are_taken(name: str) -> None:
    @job(name)
    def handler(payload: dict[str, Any]) -> None:
        return None

    assert REGISTRY[name].run is handler


def test_a_wrong_signature_is_refused() -> None:
    def no_parameter() -> None:
        return None

    def three(payload: dict[str, Any], ctx: JobContext, extra: int) -> None:
        return None

    for wrong in (no_parameter, three):
        with pytest.raises(JobTypeError, match=r"must take \(payload\) or \(payload, ctx\)") as e:
            job("test.wrong")(wrong)
        assert wrong.__qualname__ in str(e.value)
    assert "test.wrong" not in REGISTRY


def test_load_registers_the_builtin_types_and_the_named_modules() -> None:
    registered = load(("tests.support.user_jobs.jobs",))
    assert {"sleep", "email", "webhook", "data_processing"} <= set(registered)
    assert {"resize", "report", "flaky", "bloat", "whoami"} <= set(registered)
    from tests.support.user_jobs import jobs

    assert registered["resize"].payload_type is jobs.Resize
    assert (registered["resize"].time_limit_ms, registered["resize"].max_attempts) == (60_000, 3)
    assert registered["report"].payload_type is jobs.Report  # from the annotation
    assert registered["report"].is_async
    assert registered["bloat"].takes_context is False
    assert registered["flaky"].payload_type == dict[str, Any]


def test_load_of_two_modules_registering_one_name_names_both() -> None:
    with pytest.raises(JobTypeError) as raised:
        load(USER_MODULES)
    message = str(raised.value)
    assert "'resize' is registered twice" in message
    assert "tests.support.user_jobs.jobs.resize" in message
    assert "tests.support.user_jobs.duplicate.resize_again" in message


def test_load_of_a_module_that_fails_to_import_names_it() -> None:
    with pytest.raises(JobTypeError) as raised:
        load(("tests.support.user_jobs.broken",))
    message = str(raised.value)
    assert "FERRY_JOBS: tests.support.user_jobs.broken could not be imported" in message
    assert "JobContxt" in message  # and why
    assert "never" not in REGISTRY


def test_load_of_a_module_that_does_not_exist_names_it() -> None:
    missing = f"tests.support.no_such_jobs_{uuid.uuid4().hex[:6]}"
    with pytest.raises(JobTypeError, match=f"FERRY_JOBS: {missing} could not be imported"):
        load((missing,))


def claimed(attempts: int, max_attempts: int = 3) -> ClaimedJob:
    return ClaimedJob(uuid.uuid4(), "t", "flaky", {}, attempts, max_attempts)


def outcome(job: ClaimedJob, exception: BaseException) -> Any:
    return decide(job, None, exception, retry_base_ms=50, retry_cap_ms=200)


def test_retry_sets_the_next_attempts_delay() -> None:
    before = utcnow()
    retried = outcome(claimed(1), Retry(after_ms=5000, reason="not ready yet"))
    after = utcnow()
    assert retried.status is JobStatus.PENDING
    assert retried.retry_delay_ms == 5000  # not the backoff (50 ms here)
    assert retried.error == "Retry: not ready yet"
    assert before + timedelta(seconds=5) <= retried.next_run_at <= after + timedelta(seconds=5)


def test_retry_without_a_reason_and_with_a_negative_delay() -> None:
    retried = outcome(claimed(2), Retry(after_ms=-10))
    assert (retried.status, retried.retry_delay_ms) == (JobStatus.PENDING, 0)
    assert retried.error == "Retry: retry requested"


def test_retry_on_the_last_attempt_fails_the_job() -> None:
    failed = outcome(claimed(3, max_attempts=3), Retry(after_ms=1000))
    assert (failed.status, failed.next_run_at) == (JobStatus.FAILED, None)


def test_a_types_backoff_is_its_own_or_the_deployments() -> None:
    from ferry.jobs.registry import backoff_ms
    from ferry.settings import Settings

    @job("test.patient", retry_base_ms=10_000, retry_cap_ms=60_000)
    def patient(payload: dict[str, Any]) -> None: ...

    @job("test.halfway", retry_cap_ms=5_000)
    def halfway(payload: dict[str, Any]) -> None: ...

    settings = Settings(retry_base_ms=2_000, retry_cap_ms=32_000)
    assert backoff_ms("test.patient", settings) == (10_000, 60_000)
    assert backoff_ms("test.halfway", settings) == (2_000, 5_000)
    assert backoff_ms("test.unregistered", settings) == (2_000, 32_000)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"max_attempts": 0}, "max_attempts is 1 to 25"),
        ({"max_attempts": 26}, "max_attempts is 1 to 25"),
        ({"retry_base_ms": -1}, "are 0 to 604,800,000"),
        ({"retry_cap_ms": MAX_BACKOFF_MS + 1}, "are 0 to 604,800,000"),
        ({"retry_base_ms": 5_000, "retry_cap_ms": 1_000}, "more than retry_cap_ms"),
    ],
)
def test_a_policy_out_of_bounds_is_refused(options: dict[str, Any], words: str) -> None:
    with pytest.raises(JobTypeError, match=words):
        job("test.bounds", **options)(lambda payload: None)


def test_names_that_differ_only_in_separators_are_refused() -> None:
    @job("test.a_b")
    def first(payload: dict[str, Any]) -> None: ...

    with pytest.raises(JobTypeError, match="only in separators"):
        job("test.a-b")(lambda payload: None)


def test_a_retry_is_at_most_a_week_away() -> None:
    assert Retry(after_ms=10**18).after_ms == Retry.MAX_AFTER_MS
    assert Retry(after_ms=-5).after_ms == 0


def test_a_policy_at_its_bounds_is_taken() -> None:
    job("test.edges", max_attempts=25, retry_base_ms=0, retry_cap_ms=MAX_BACKOFF_MS)(
        lambda payload: None
    )
    edges = REGISTRY["test.edges"]
    assert (edges.max_attempts, edges.retry_base_ms, edges.retry_cap_ms) == (25, 0, MAX_BACKOFF_MS)


def test_the_backoff_bound_is_a_retrys() -> None:
    assert MAX_BACKOFF_MS == Retry.MAX_AFTER_MS == 7 * 24 * 3600 * 1000


@pytest.mark.parametrize(
    ("base_ms", "cap_ms", "at_fault"),
    [
        (None, None, None),  # the type's own, whatever it is
        (1_000, None, None),  # under the type's cap
        (2_000, None, None),  # equal is fine
        (2_001, None, "base"),  # over the type's cap (2,000)
        (None, 500, None),  # over the type's base (500)
        (None, 499, "cap"),
        (9_000, 10_000, None),  # both given: the type's do not count
        (10_000, 9_000, "cap"),  # both given: the cap is blamed
        (0, 0, None),
    ],
)
def test_a_jobs_own_backoff_with_the_half_it_leaves_to_its_type(
    base_ms: int | None, cap_ms: int | None, at_fault: str | None
) -> None:
    assert backoff_conflict(base_ms, cap_ms, (500, 2_000)) == at_fault


def digested(**options: Any) -> registry.TypeDigest:
    """The digest of a type registered with `options`, registered afresh each time."""
    payload = options.pop("payload", Thumbnail)
    REGISTRY.pop("test.digest", None)
    job("test.digest", payload=payload, **options)(lambda payload: None)
    return digest_of(REGISTRY["test.digest"])


class Wider(msgspec.Struct, rename="camel"):
    url: str
    max_width: int
    max_height: int


def test_a_digest_covers_the_payload_schema_time_limit_attempts_and_backoff() -> None:
    plain = digested()
    assert plain == digested()  # the same registration, the same digest
    assert len(plain.digest) == 16
    assert (plain.time_limit_ms, plain.max_attempts) == (600_000, None)
    changed = {
        "payload_schema": digested(payload=Wider),
        "time_limit_ms": digested(time_limit_s=5),
        "max_attempts": digested(max_attempts=2),
        "retry_base_ms": digested(retry_base_ms=100),
        "retry_cap_ms": digested(retry_cap_ms=100_000),
    }
    for part, other in changed.items():
        assert other.digest != plain.digest, part
        differing = [
            field
            for field in other.__struct_fields__
            if getattr(other, field) != getattr(plain, field)
        ]
        assert differing == ["digest", part]


def test_a_digest_depends_on_the_payloads_shape_not_its_class() -> None:
    """Another process imports its own class: a struct of the same name and fields has
    the same digest (the agreeing worker of tests/integration/jobs/test_type_agreement.py
    is the same across processes)."""
    first = digested()
    again = msgspec.defstruct("Thumbnail", [("url", str), ("max_width", int)], rename="camel")
    assert again is not Thumbnail
    assert digested(payload=again) == first


def test_a_digest_ignores_the_payloads_docstring_but_not_a_field_named_title() -> None:
    class Doc(msgspec.Struct):
        """One docstring."""

        title: str

    first = digested(payload=Doc)
    Doc.__doc__ = "Another docstring."  # a new version of the same type's words
    assert digested(payload=Doc) == first

    class Other(msgspec.Struct):
        """One docstring."""

        name: str

    Other.__name__ = Other.__qualname__ = "Doc"
    assert digested(payload=Other).payload_schema != first.payload_schema
