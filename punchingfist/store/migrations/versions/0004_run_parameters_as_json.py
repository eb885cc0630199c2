"""Store run parameters as `json` and keep run rows uncompressed on PostgreSQL.

Intake writes one run per new alert, and its parameters (the event, a few kilobytes) were the
costliest part of every webhook batch: converted to `jsonb`, then, past 2 kB a row,
compressed by TOAST. Nothing queries into them (the dispatcher reads them back whole), so
they are kept as `json` text, and rows up to a page (`toast_tuple_target`) stay inline
uncompressed. SQLite stores JSON as text already: nothing to do there.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE workflow_runs ALTER COLUMN parameters TYPE json USING parameters::json")
    op.execute("ALTER TABLE workflow_runs SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE workflow_runs RESET (toast_tuple_target)")
    op.execute(
        "ALTER TABLE workflow_runs ALTER COLUMN parameters TYPE jsonb USING parameters::jsonb"
    )
