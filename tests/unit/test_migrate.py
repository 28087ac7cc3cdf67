"""Which databases this code can run on, by their latest applied migration."""

from __future__ import annotations

from pathlib import Path

from ferry.migrate import MIGRATE, PROJECT_ROOT, revisions, schema_problem


def test_the_revisions_are_every_migration_latest_first() -> None:
    files = sorted((PROJECT_ROOT / "migrations" / "versions").glob("[0-9]*.py"))
    assert list(revisions()) == [Path(file).name.split("_")[0] for file in reversed(files)]


def test_a_database_at_the_latest_migration_or_a_newer_one_is_fine() -> None:
    assert schema_problem(revisions()[0]) is None
    assert schema_problem("9999_next") is None  # migrated for the next version first


def test_a_database_behind_or_never_migrated_is_named_so() -> None:
    latest, oldest = revisions()[0], revisions()[-1]
    assert schema_problem(oldest) == (
        f"behind: at migration {oldest}, this Ferry needs {latest} ({MIGRATE})"
    )
    assert schema_problem(None) == f"not migrated ({MIGRATE})"
