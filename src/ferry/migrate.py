"""Apply the alembic migrations programmatically (`just migrate`, `just dev`, tests)."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command, op
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ferry.settings import load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


MIGRATE = "run `python -m ferry.migrate`, or `just migrate`"


@cache
def revisions() -> tuple[str, ...]:
    """The migrations this code knows, the latest (the one it needs) first."""
    scripts = ScriptDirectory.from_config(alembic_config(""))
    return tuple(script.revision for script in scripts.walk_revisions())


def schema_problem(at: str | None) -> str | None:
    """What is wrong with a database whose latest applied migration is `at` (None: it has
    none), for this code; None if nothing. A migration this code does not know is newer
    (the database was migrated for the next version first, as a rolling upgrade does)
    and is no problem."""
    known = revisions()
    if at is None:
        return f"not migrated ({MIGRATE})"
    if at in known and at != known[0]:
        return f"behind: at migration {at}, this Ferry needs {known[0]} ({MIGRATE})"
    return None


def create_index_online(name: str, table: str, columns: list[str], **options: Any) -> None:
    """In a migration: create an index without holding the table's writes while it is
    built. On PostgreSQL it is built CONCURRENTLY, outside a transaction, which commits
    what the migration did before it: that must be safe to run again. An invalid index
    of that name (a concurrent build that failed half-way) is dropped and built again,
    and a valid one is kept (an operator may have built it first); offline (`--sql`)
    there is no database to look at, and the script keeps what it finds."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.create_index(name, table, columns, if_not_exists=True, **options)
        return
    with context.autocommit_block():
        if not context.as_sql and op.get_bind().scalar(_INVALID, {"name": name, "table": table}):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
        op.create_index(
            name, table, columns, postgresql_concurrently=True, if_not_exists=True, **options
        )


def drop_index_online(name: str, table: str) -> None:
    """In a migration: drop an index, if it is there, without holding the table's writes
    (CONCURRENTLY on PostgreSQL, outside a transaction)."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.drop_index(name, table_name=table, if_exists=True)
        return
    with context.autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


# Whether the index `name` of `table` (as the search path finds it) is invalid.
_INVALID = text(
    "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = to_regclass(:table) AND c.relname = :name"
)


def main() -> None:
    settings = load_settings()
    upgrade(settings.database_url, sys.argv[1] if len(sys.argv) > 1 else "head")
    print(f"ferry: database is at the latest migration ({settings.database_url.split('@')[-1]})")


if __name__ == "__main__":
    main()
