"""Add a job's progress (fraction and message, from its handler's `ctx.progress`) and its
own backoff (base and cap of the retry delay, overriding its type's).

All nullable with no default: adding them rewrites no row. NULL progress means
the running attempt has not reported any; NULL backoff means the type's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress", sa.Float(), nullable=True))
        batch.add_column(sa.Column("progress_message", sa.Text(), nullable=True))
        batch.add_column(sa.Column("retry_base_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("retry_cap_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("retry_cap_ms")
        batch.drop_column("retry_base_ms")
        batch.drop_column("progress_message")
        batch.drop_column("progress")
