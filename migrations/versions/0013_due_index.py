"""The index of PENDING jobs by due time takes the id as well: the recovery pass reads
the overdue jobs in windows that go on from a (due time, id), and many jobs share a
due time (a batch, a `runAt`); without the id a window inside such a group read the
whole group again. Built CONCURRENTLY on PostgreSQL, then the index it replaces is
dropped the same way: writes to `jobs` go on meanwhile.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from ferry.migrate import create_index_online, drop_index_online

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_online("ix_jobs_status_due", "jobs", ["status", "next_run_at", "id"])
    drop_index_online("ix_jobs_status_next_run", "jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status_next_run", "jobs", ["status", "next_run_at"])
    op.drop_index("ix_jobs_status_due", table_name="jobs")
