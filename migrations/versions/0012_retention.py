"""Add retention: each tenant's own retention of finished jobs (by status), and the
index that finds the jobs finished longest ago.

The index is built with CREATE INDEX, which holds writes to `jobs` while it is
built: on a large table, create it by hand first with CREATE INDEX CONCURRENTLY
(the same name), and this migration finds it there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("completed", "failed", "cancelled")


def upgrade() -> None:
    with op.batch_alter_table("tenant_limits") as batch:
        for status in STATUSES:
            batch.add_column(sa.Column(f"retention_{status}_ms", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_jobs_status_finished", "jobs", ["status", "finished_at"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_status_finished", table_name="jobs")
    with op.batch_alter_table("tenant_limits") as batch:
        for status in STATUSES:
            batch.drop_column(f"retention_{status}_ms")
