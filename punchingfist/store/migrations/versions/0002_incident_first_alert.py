"""Incidents remember their first alert, which new alerts of the incident relate to.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 18:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_alert_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("first_alert_id")
