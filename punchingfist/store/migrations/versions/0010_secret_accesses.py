"""The audit of secret accesses (#26): one row per read of a secret reference from its manager
(Vault, AWS Secrets Manager, Azure Key Vault, env, a Kubernetes Secret), and per failed or
stale read: who (the server, the operator, a run's name), which reference, when, from where,
and the outcome. Never the value.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_accesses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference", sa.String(length=1024), nullable=False),
        sa.Column("who", sa.String(length=300), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_secret_accesses_at", "secret_accesses", ["at"])


def downgrade() -> None:
    op.drop_index("ix_secret_accesses_at", table_name="secret_accesses")
    op.drop_table("secret_accesses")
