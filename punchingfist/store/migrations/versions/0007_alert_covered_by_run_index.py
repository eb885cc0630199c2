"""Index the alerts that joined another run by that run: the dispatcher adds them to the
run's `event.alerts` when it starts it. Partial (only the joined alerts), so intake's inserts
of the others do not pay for it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    joined = sa.text("covered_by_run IS NOT NULL")
    op.create_index(
        "idx_alerts_covered_by_run",
        "alerts",
        ["covered_by_run"],
        postgresql_where=joined,
        sqlite_where=joined,
    )


def downgrade() -> None:
    op.drop_index("idx_alerts_covered_by_run", table_name="alerts")
