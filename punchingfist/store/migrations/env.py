"""Alembic environment: online migrations against the URL the config carries."""

from __future__ import annotations

from alembic import context

from punchingfist.store.models import Base, declared
from punchingfist.store.sessions import make_engine

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=declared,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
