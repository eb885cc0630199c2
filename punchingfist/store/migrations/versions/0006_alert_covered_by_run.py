"""Alerts that start no run of their own say which run covers them (an investigation scoped
per group or incident, or a cooldown: the Source's `investigation` settings).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as table:
        table.add_column(sa.Column("covered_by_run", sa.String(253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as table:
        table.drop_column("covered_by_run")
