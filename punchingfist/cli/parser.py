"""The `punchingfist` argument parser: one subcommand per module of this package."""

from __future__ import annotations

import argparse

from punchingfist import __version__
from punchingfist.cli import (
    approve,
    compile,
    controller,
    crds,
    db,
    demo,
    evals,
    event,
    incidents,
    run,
    serve,
    submit,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="punchingfist",
        description="Punching Fist: AI-assisted incident response on Argo Workflows.",
    )
    parser.add_argument("--version", action="version", version=f"punchingfist {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in (
        compile,
        crds,
        event,
        submit,
        approve,
        incidents,
        serve,
        run,
        evals,
        demo,
        controller,
        db,
    ):
        command.add_parser(commands)
    return parser
