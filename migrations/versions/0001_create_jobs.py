"""Create the jobs table and its listing indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import op

from ferry.db.models import JsonColumn

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", GUID(length=16), primary_key=True),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", JsonColumn, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", JsonColumn, nullable=True),
        sa.Column("created_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("updated_at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("started_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("finished_at", DateTimeUTC(timezone=True), nullable=True),
        sa.Column("next_run_at", DateTimeUTC(timezone=True), nullable=True),
    )
    newest = (sa.text("created_at DESC"), sa.text("id DESC"))
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant_id", *newest])
    op.create_index("ix_jobs_tenant_status_created", "jobs", ["tenant_id", "status", *newest])
    op.create_index(
        "ix_jobs_tenant_type_created", "jobs", ["tenant_id", "type", sa.text("created_at DESC")]
    )
    op.create_index("ix_jobs_created", "jobs", list(newest))
    op.create_index("ix_jobs_status_next_run", "jobs", ["status", "next_run_at"])


def downgrade() -> None:
    op.drop_table("jobs")
