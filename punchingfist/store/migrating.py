"""Alembic migrations, run from code: `punchingfist db upgrade` and the server's start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import OperationalError

from punchingfist.store.sessions import DatabaseError, _redact, database_url, make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> str | None:
    """Bring the schema to `revision`; returns the revision the database is at afterwards."""
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as error:
        raise DatabaseError(f"cannot migrate {_redact(database_url(url))}: {error.orig}") from error
    return current_revision(url)


def current_revision(url: str | None = None) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as error:
        raise DatabaseError(f"cannot reach {_redact(database_url(url))}: {error.orig}") from error
    finally:
        engine.dispose()
