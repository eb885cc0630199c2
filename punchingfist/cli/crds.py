"""`punchingfist crds`: the CustomResourceDefinitions, printed or written to files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from punchingfist.api.crds import render_crds
from punchingfist.cli.exit_codes import EXIT_OK


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crds = commands.add_parser(
        "crds",
        help="print (or write) the CustomResourceDefinitions",
        description="Print the punchingfist.io CRDs generated from the API models.",
    )
    crds.add_argument("-d", "--output-dir", metavar="DIR", help="write one file per CRD here")
    crds.set_defaults(handler=_crds)


def _crds(args: argparse.Namespace) -> int:
    files = render_crds()
    if args.output_dir:
        directory = Path(args.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)
            print(f"wrote {directory / name}", file=sys.stderr)
    else:
        sys.stdout.write("---\n".join(files.values()))
    return EXIT_OK
