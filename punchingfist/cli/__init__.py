"""The `punchingfist` command: compile Workflows, serve, submit runs, answer approval gates.

`parser` builds the arguments of every subcommand from its module (`compile`, `serve`,
`demo`, ...); `assembly` puts a server process together for `serve` and `demo`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from punchingfist.cli.evals import with_action
from punchingfist.cli.exit_codes import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from punchingfist.cli.parser import build_parser
from punchingfist.errors import InvalidInput, PunchingFistError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(with_action(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
        return code
    except InvalidInput as error:
        for item in error.errors:
            print(f"error: {item}", file=sys.stderr)
        return EXIT_INVALID
    except PunchingFistError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        return EXIT_OK
