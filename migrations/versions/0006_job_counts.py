"""Add job_counts: jobs per (tenant, type, status), kept by triggers on PostgreSQL.

`GET /jobs` (its `total`) and `GET /jobs/stats` read these counters instead of
counting rows: a count over a million jobs takes a few hundred milliseconds,
a sum over the counters well under one. Statement-level triggers with
transition tables add each statement's changes in one upsert, so a batch of
100 transitions costs one. Counters are split over 16 shards (by backend pid)
so concurrent transactions on the same tenant do not queue on one row; the
upsert takes its rows in key order, so two of them never deadlock.
SQLite (the embedded default) counts rows instead: no table, no trigger.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What each kind of statement changes, as (tenant_id, type, status, delta) rows.
CHANGES = {
    "INSERT": "SELECT tenant_id, type, status, 1 AS delta FROM new_rows",
    "DELETE": "SELECT tenant_id, type, status, -1 AS delta FROM old_rows",
    "UPDATE": "SELECT tenant_id, type, status, 1 AS delta FROM new_rows"
    " UNION ALL SELECT tenant_id, type, status, -1 FROM old_rows",
}
TABLES = {
    "INSERT": "NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def function(operation: str) -> str:
    return f"""
CREATE FUNCTION ferry_count_{operation.lower()}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_counts AS c (tenant_id, type, status, shard, n)
  SELECT tenant_id, type, status, pg_backend_pid() % 16, sum(delta)
  FROM ({CHANGES[operation]}) AS changes
  GROUP BY tenant_id, type, status
  HAVING sum(delta) <> 0
  ORDER BY tenant_id, type, status
  ON CONFLICT (tenant_id, type, status, shard) DO UPDATE SET n = c.n + excluded.n;
  RETURN NULL;
END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "job_counts",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("type", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("shard", sa.SmallInteger(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    # No job may change between the backfill and the triggers.
    op.execute("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO job_counts (tenant_id, type, status, shard, n)"
        " SELECT tenant_id, type, status, 0, count(*) FROM jobs GROUP BY 1, 2, 3"
    )
    for operation in CHANGES:
        op.execute(function(operation))
        op.execute(
            f"CREATE TRIGGER jobs_counted_{operation.lower()} AFTER {operation} ON jobs"
            f" REFERENCING {TABLES[operation]}"
            f" FOR EACH STATEMENT EXECUTE FUNCTION ferry_count_{operation.lower()}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for operation in CHANGES:
        op.execute(f"DROP TRIGGER jobs_counted_{operation.lower()} ON jobs")
        op.execute(f"DROP FUNCTION ferry_count_{operation.lower()}()")
    op.drop_table("job_counts")
