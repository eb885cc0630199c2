"""Index incidents by creation time: every intake batch looks up the open incidents of the
correlation window, which without it is a scan of the whole incidents table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 22:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_incidents_created_at", "incidents", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_incidents_created_at", table_name="incidents")
