"""Keep what a notification's alerts share once: the `notifications` table.

A webhook payload of N alerts starts N runs, and each run's event carried the whole group
part (the identities of all N alerts, the group and common labels): N times over, so a run row
grew with its group. Intake now writes that part once per notification, and each run refers
to it (`workflow_runs.notification_id`); `WorkflowRun.arguments` gives the whole event back.
Runs stored before keep their whole event in their own parameters.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("group_key", sa.String(length=1024), nullable=True),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workflow_runs") as batch:
        batch.add_column(sa.Column("notification_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            "fk_workflow_runs_notification_id", "notifications", ["notification_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_constraint("fk_workflow_runs_notification_id", type_="foreignkey")
        batch.drop_column("notification_id")
    op.drop_table("notifications")
