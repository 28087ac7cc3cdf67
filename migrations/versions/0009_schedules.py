"""Add schedules (cron), the schedule and due time of the jobs they fire, and parked
jobs (due too far ahead to wait in Redis).

The unique index on (schedule_id, scheduled_for) is what makes a schedule fire
once per due time; it covers only the jobs a schedule fired, so it stays small.
The new job columns are nullable or have a constant default: adding them rewrites
no row. The indexes of `jobs` are built last, CONCURRENTLY on PostgreSQL, which
commits what came before them: every step before them may run again (IF NOT
EXISTS), so a build that failed is taken up by running the migration again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from ferry.migrate import create_index_online

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", GUID(), primary_key=True),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("missed", sa.String(8), nullable=False),
        sa.Column("job_type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("last_run_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("last_job_id", GUID(), nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        if_not_exists=True,
    )
    op.create_index(
        "ux_schedules_tenant_name",
        "schedules",
        ["tenant_id", "name"],
        unique=True,
        if_not_exists=True,
    )
    op.create_index(
        "ix_schedules_paused_next_run", "schedules", ["paused", "next_run_at"], if_not_exists=True
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("schedule_id", GUID(), nullable=True), if_not_exists=True)
        batch.add_column(
            sa.Column("scheduled_for", DateTimeUTC(timezone=True), nullable=True),
            if_not_exists=True,
        )
        batch.add_column(
            sa.Column("parked", sa.Boolean(), nullable=False, server_default=sa.false()),
            if_not_exists=True,
        )
    # Last: the indexes of `jobs`, which may be large, built without holding its writes.
    create_index_online(
        "ix_jobs_parked_next_run",
        "jobs",
        ["next_run_at"],
        postgresql_where=sa.text("parked"),
        sqlite_where=sa.text("parked"),
    )
    create_index_online(
        "ux_jobs_schedule_due",
        "jobs",
        ["schedule_id", "scheduled_for"],
        unique=True,
        postgresql_where=sa.text("schedule_id IS NOT NULL"),
        sqlite_where=sa.text("schedule_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_jobs_schedule_due", table_name="jobs")
    op.drop_index("ix_jobs_parked_next_run", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("parked")
        batch.drop_column("scheduled_for")
        batch.drop_column("schedule_id")
    op.drop_table("schedules")
