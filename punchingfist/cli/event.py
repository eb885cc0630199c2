"""`punchingfist event`: the event a run receives for one alert of an Alertmanager payload."""

from __future__ import annotations

import argparse
import json
import sys

from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.cli.inputs import alert_event


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    event = commands.add_parser(
        "event",
        help="turn an Alertmanager webhook payload into a run's event JSON",
        description=(
            "Print the event a run receives for one alert of an Alertmanager webhook payload "
            "(what templates read as .source.data), e.g. for "
            '`argo submit --from workflowtemplate/NAME -p event="$(punchingfist event -f a.json)"`.'
        ),
    )
    event.add_argument(
        "-f", "--filename", required=True, metavar="FILE", help="payload; '-' = stdin"
    )
    event.add_argument(
        "--alert",
        type=int,
        default=0,
        metavar="N",
        help="which alert of the payload (default: the first)",
    )
    event.set_defaults(handler=_event)


def _event(args: argparse.Namespace) -> int:
    event, _ = alert_event(args.filename, args.alert, "--alert")
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    return EXIT_OK
