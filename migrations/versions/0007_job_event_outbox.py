"""Add job_event_outbox: the jobs of each committed status change, until their events are out.

Every statement that changes jobs' statuses on PostgreSQL adds one row here in
the same statement (or transaction): the jobs it changed and the time it
stamped on them. Events are appended to the tenant's event log after the
commit; the recovery pass appends those of rows whose writer died (or could
not reach Redis) in between, and deletes the rows. No index but the key: the
table holds a few seconds of rows.
SQLite (the embedded default) has no such table: its worker runs inside the
API process and shares its in-memory event log.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "job_event_outbox",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("at", DateTimeUTC(timezone=True), nullable=False),
        sa.Column("job_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("job_event_outbox")
