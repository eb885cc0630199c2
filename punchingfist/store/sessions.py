"""Engines and sessions: SQLite by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.errors import PunchingFistError

DEFAULT_URL = "sqlite:///punchingfist.db"
ENV = "PUNCHINGFIST_DATABASE_URL"
FAST_PATH_ENV = "PUNCHINGFIST_STORE_FAST_PATH"
"""`off` turns the PostgreSQL fast path of batches off (`store.batches`) for the engines made
from then on."""
FAST_PATH_OPTION = "punchingfist_fast_path"
"""The engine's execution option that holds whether its batches take the fast path."""


class DatabaseError(PunchingFistError):
    """The database URL is unusable or the database cannot be reached."""


def database_url(explicit: str | None = None) -> str:
    """`--database-url`, else PUNCHINGFIST_DATABASE_URL, else a SQLite file here."""
    url = explicit or os.environ.get(ENV) or DEFAULT_URL
    if url.startswith(("postgres://", "postgresql://")):
        # The design document writes `postgresql://...`; use the psycopg 3 driver for it.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if not url.startswith(("sqlite", "postgresql+psycopg")):
        raise DatabaseError(
            f"unsupported database URL {_redact(url)!r}: use sqlite:///FILE or "
            "postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    return url


def make_engine(url: str | None = None) -> Engine:
    resolved = database_url(url)
    if resolved.startswith("sqlite"):
        path = resolved.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, record):  # type: ignore[no-untyped-def]
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    fast = os.environ.get(FAST_PATH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")
    return create_engine(
        resolved,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        execution_options={FAST_PATH_OPTION: fast},
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
