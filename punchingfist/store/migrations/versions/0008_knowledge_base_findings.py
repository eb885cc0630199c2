"""Memory (#22): a knowledge entry holds a run's findings (summary, evidence, where it fired,
the run) and a human's judgement of them (confirmed, verdict right/wrong, by whom, notes);
an incident keeps the notes of the human who resolved it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 20:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("knowledge_base") as table:
        table.add_column(sa.Column("run_id", sa.Uuid(), nullable=True))
        table.add_column(sa.Column("summary", sa.Text(), nullable=True))
        table.add_column(sa.Column("evidence", _JSON, nullable=True))
        table.add_column(sa.Column("severity", sa.String(20), nullable=True))
        table.add_column(sa.Column("namespace", sa.String(253), nullable=True))
        table.add_column(sa.Column("service", sa.String(253), nullable=True))
        table.add_column(
            sa.Column("confirmed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("verdict", sa.String(10), nullable=True))
        table.add_column(sa.Column("confirmed_by", sa.String(255), nullable=True))
        table.add_column(sa.Column("confirmed_at", _WHEN, nullable=True))
        table.add_column(sa.Column("resolution_notes", sa.Text(), nullable=True))
        table.add_column(
            sa.Column("updated_at", _WHEN, nullable=False, server_default=sa.func.now())
        )
        table.create_foreign_key(
            "fk_knowledge_base_run_id",
            "workflow_runs",
            ["run_id"],
            ["id"],
            ondelete="SET NULL",
        )
        table.create_unique_constraint("uq_knowledge_base_run_id", ["run_id"])
        table.create_index("idx_knowledge_base_namespace", ["namespace"])
        table.create_index("idx_knowledge_base_service", ["service"])
    with op.batch_alter_table("incidents") as table:
        table.add_column(sa.Column("resolution_notes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as table:
        table.drop_column("resolution_notes")
    with op.batch_alter_table("knowledge_base") as table:
        table.drop_index("idx_knowledge_base_service")
        table.drop_index("idx_knowledge_base_namespace")
        table.drop_constraint("uq_knowledge_base_run_id", type_="unique")
        table.drop_constraint("fk_knowledge_base_run_id", type_="foreignkey")
        for column in (
            "updated_at",
            "resolution_notes",
            "confirmed_at",
            "confirmed_by",
            "verdict",
            "confirmed",
            "service",
            "namespace",
            "severity",
            "evidence",
            "summary",
            "run_id",
        ):
            table.drop_column(column)
