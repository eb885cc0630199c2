"""An incident says what the fixes of its runs did (#25): `remediations`, one object per
remediation step of a run (the action, its target, the outcome, the rollback and its
verification, who approved it, when), written by the recorder when the fix task reports.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as table:
        table.add_column(sa.Column("remediations", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as table:
        table.drop_column("remediations")
