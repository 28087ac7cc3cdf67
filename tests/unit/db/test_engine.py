"""Which database errors the worker waits out and which it takes for a refusal of a job's data."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ferry.db.engine import connection_lost, refused_for_data


class Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def error(kind: type[DBAPIError], sqlstate: str) -> DBAPIError:
    return kind("UPDATE jobs ...", {}, Orig(sqlstate))


@pytest.mark.parametrize(
    "exc",
    [
        error(DataError, "22021"),  # invalid byte sequence (a NUL in a result)
        error(DataError, "22P05"),  # untranslatable character
        error(IntegrityError, "23505"),
        error(DBAPIError, "22001"),  # a value too long, whatever class the driver maps it to
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),  # before sending
    ],
)
def test_a_refusal_of_the_data_is_split_out_not_retried(exc: BaseException) -> None:
    assert refused_for_data(exc)
    assert not connection_lost(exc)


@pytest.mark.parametrize(
    "exc",
    [
        error(ProgrammingError, "42P01"),  # a table not migrated yet: waited out
        error(DBAPIError, "25006"),  # read-only transaction, after a failover
        error(OperationalError, "08006"),  # connection failure
        error(DBAPIError, "40001"),  # serialization failure
        error(DBAPIError, "57P01"),  # admin shutdown
        ConnectionResetError("the server closed the connection"),
        TimeoutError(),
    ],
)
def test_what_fails_every_statement_alike_is_waited_out(exc: BaseException) -> None:
    assert not refused_for_data(exc)
