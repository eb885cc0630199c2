"""`punchingfist db`: the database schema (upgrade, current revision)."""

from __future__ import annotations

import argparse

from punchingfist.cli.exit_codes import EXIT_OK


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(title="db commands", metavar="COMMAND")
    for name, helptext, handler in (
        ("upgrade", "apply the migrations (create or update the schema)", _db_upgrade),
        ("current", "print the schema revision of the database", _db_current),
    ):
        command = db_commands.add_parser(name, help=helptext, description=helptext)
        command.add_argument(
            "--database-url",
            help="sqlite:///FILE or postgresql://USER:PASSWORD@HOST/DB "
            "(default: $PUNCHINGFIST_DATABASE_URL, else sqlite:///punchingfist.db)",
        )
        command.set_defaults(handler=handler)


def _db_upgrade(args: argparse.Namespace) -> int:
    from punchingfist.store import upgrade

    revision = upgrade(args.database_url)
    print(f"database at revision {revision}")
    return EXIT_OK


def _db_current(args: argparse.Namespace) -> int:
    from punchingfist.store import current_revision

    print(current_revision(args.database_url) or "empty (run `punchingfist db upgrade`)")
    return EXIT_OK
