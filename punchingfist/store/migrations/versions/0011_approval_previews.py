"""An approval keeps the preview of the fix it gates and the object version it approved (#25):
`preview` is the remediation step's Preview (the action, its target, the server-side dry run's
diff, RBAC, whether it is offered) as the approver saw it; `approved_resource_version` is the
preview's resourceVersion when it was approved (the fix applies only to that version).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("approvals") as table:
        table.add_column(sa.Column("preview", _JSON, nullable=True))
        table.add_column(sa.Column("approved_resource_version", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as table:
        table.drop_column("approved_resource_version")
        table.drop_column("preview")
