"""Add retention: each tenant's own retention of finished jobs (by status), and the
index that finds the jobs finished longest ago.

On PostgreSQL the index is built CONCURRENTLY: writes to `jobs` go on while it is
built.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ferry.migrate import create_index_online

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("completed", "failed", "cancelled")


def upgrade() -> None:
    # First: a build that failed leaves nothing else committed, and running the
    # migration again takes it up.
    create_index_online("ix_jobs_status_finished", "jobs", ["status", "finished_at"])
    with op.batch_alter_table("tenant_limits") as batch:
        for status in STATUSES:
            batch.add_column(sa.Column(f"retention_{status}_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_jobs_status_finished", table_name="jobs")
    with op.batch_alter_table("tenant_limits") as batch:
        for status in STATUSES:
            batch.drop_column(f"retention_{status}_ms")
