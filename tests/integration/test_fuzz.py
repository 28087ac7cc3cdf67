"""Fuzzing the API from its own OpenAPI document (schemathesis): whatever the input,
the answer is never a server error. A real API process on PostgreSQL and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema

from tests.processes import api_process, shared_env
from tests.services import redis_namespace

EXAMPLES = 25  # per operation: bounded, so the suite stays quick


@pytest.fixture(scope="module")
def api_schema(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseSchema]:
    logs = tmp_path_factory.mktemp("fuzz")
    with redis_namespace() as namespace:
        env = shared_env(
            database_url,
            namespace,
            LOG_LEVEL="WARNING",
        )
        with api_process(env, Path.cwd(), logs / "api.log") as base:
            # The streams never end: fuzz everything else.
            schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
            yield schema.exclude(path_regex="^/(events|ws)$")


def test_no_input_makes_a_server_error(api_schema: BaseSchema) -> None:
    # Operation by operation, with hypothesis driving schemathesis' strategies
    # (its pytest plugin does not run on this pytest).
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        operations.append(result.ok())
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same examples every run: a failure reproduces
            database=None,
        )
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=[not_a_server_error], timeout=10)

        call()
