"""The secret-access audit in the store: `secret_accesses` rows (migration 0010)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from punchingfist.secrets import SecretAccess
from punchingfist.store.models import SecretAccessRecord


def secret_audit(sessions: sessionmaker[Session]) -> Callable[[SecretAccess], None]:
    """An audit sink for `SecretResolver`: one row per access it reports (never a value)."""

    def record(access: SecretAccess) -> None:
        with sessions.begin() as session:
            session.add(
                SecretAccessRecord(
                    at=access.at,
                    reference=access.reference[:1024],
                    who=access.who[:300],
                    source=access.source,
                    outcome=access.outcome,
                )
            )

    return record
