"""Memory (#22): a full-text index on what a knowledge entry says (its alert name, summary,
root cause, fix and resolution notes), so similar past incidents are found without a scan.

PostgreSQL: a GIN index on the `to_tsvector('english', ...)` of that text (the expression is
`punchingfist.store.models.DOCUMENT_TEXT`; a query must use the same one to use the index).
SQLite: an FTS5 table `knowledge_fts` (porter stemming) whose rowid is the entry's rowid, kept
in sync by triggers. A later migration that rebuilds `knowledge_base` on SQLite (batch mode
copies the table) drops these triggers and renumbers rowids: it must run `upgrade()`'s SQLite
statements again after the copy.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 21:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_FIELDS = ("alert_name", "summary", "root_cause", "fix", "resolution_notes")


def _document(prefix: str = "") -> str:
    return " || ' ' || ".join(f"coalesce({prefix}{field}, '')" for field in _FIELDS)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX idx_knowledge_base_document ON knowledge_base "
            f"USING gin (to_tsvector('english', {_document()}))"
        )
        return
    op.execute(
        "CREATE VIRTUAL TABLE knowledge_fts USING fts5(document, tokenize = 'porter unicode61')"
    )
    op.execute(
        "CREATE TRIGGER knowledge_fts_insert AFTER INSERT ON knowledge_base BEGIN "
        f"INSERT INTO knowledge_fts (rowid, document) VALUES (new.rowid, {_document('new.')}); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER knowledge_fts_delete AFTER DELETE ON knowledge_base BEGIN "
        "DELETE FROM knowledge_fts WHERE rowid = old.rowid; END"
    )
    op.execute(
        f"CREATE TRIGGER knowledge_fts_update AFTER UPDATE OF {', '.join(_FIELDS)} "
        "ON knowledge_base BEGIN "
        f"UPDATE knowledge_fts SET document = {_document('new.')} WHERE rowid = new.rowid; END"
    )
    op.execute(
        f"INSERT INTO knowledge_fts (rowid, document) SELECT rowid, {_document()} "
        "FROM knowledge_base"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX idx_knowledge_base_document")
        return
    for trigger in ("knowledge_fts_update", "knowledge_fts_delete", "knowledge_fts_insert"):
        op.execute(f"DROP TRIGGER {trigger}")
    op.execute("DROP TABLE knowledge_fts")
