"""Add pauses: the tenants, and job types of a tenant, whose jobs are held.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("job_type", sa.String(32), primary_key=True),
        sa.Column("paused_at", DateTimeUTC(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pauses")
