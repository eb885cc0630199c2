"""`punchingfist compile`: Workflows into Argo WorkflowTemplates."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from punchingfist.api import OperatorConfig, Source, Workflow
from punchingfist.api.workflows import DEFAULT_IMAGE
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.cli.inputs import read_resources
from punchingfist.compiler import Defaults, compile_resources
from punchingfist.errors import PunchingFistError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compile_ = commands.add_parser(
        "compile",
        help="compile Workflows into Argo WorkflowTemplates",
        description=(
            "Read Workflows, Sinks, Sources and an OperatorConfig from YAML files and print one "
            "Argo WorkflowTemplate per Workflow (plus a Secret when a resource holds a credential "
            "in clear text). The output works with `kubectl apply -f -` and "
            "`argo submit --from workflowtemplate/NAME`."
        ),
    )
    compile_.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="YAML file or directory (read recursively); '-' reads stdin. Repeatable.",
    )
    compile_.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    compile_.add_argument(
        "--workflow",
        action="append",
        metavar="NAME",
        help="compile only this Workflow (repeatable; default: every Workflow given)",
    )
    compile_.add_argument(
        "--operator-config",
        metavar="NAME",
        help="which OperatorConfig to use when the input holds several",
    )
    compile_.add_argument("-n", "--namespace", help="namespace to put on the emitted objects")
    runtime_image_argument(compile_)
    compile_.set_defaults(handler=_compile)


def runtime_image_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--runtime-image",
        default=DEFAULT_IMAGE,
        metavar="IMAGE",
        help="image of the steps of Workflows that name none in spec.runtime.image (default: "
        f"{DEFAULT_IMAGE}; the chart passes the image the operator runs)",
    )


def _compile(args: argparse.Namespace) -> int:
    resources = list(read_resources(args.filename))
    configs = [r for r in resources if isinstance(r, OperatorConfig)]
    if len(configs) > 1:
        names = ", ".join(c.name for c in configs)
        if args.operator_config is None:
            raise PunchingFistError(
                f"the input holds several OperatorConfigs ({names}); pick one with "
                "--operator-config NAME"
            )
        chosen = [c for c in configs if c.name == args.operator_config]
        if not chosen:
            raise PunchingFistError(f"no OperatorConfig {args.operator_config!r} (given: {names})")
        resources = [r for r in resources if not isinstance(r, OperatorConfig)]
        resources += chosen
    workflows = [r for r in resources if isinstance(r, Workflow)]
    if args.workflow:
        missing = sorted(set(args.workflow) - {w.name for w in workflows})
        if missing:
            raise PunchingFistError(f"no Workflow {missing[0]!r} in the input")
        resources = [r for r in resources if not isinstance(r, Workflow) or r.name in args.workflow]
    elif not workflows:
        raise PunchingFistError("the input holds no Workflow to compile")
    else:
        given = {w.name for w in workflows}
        for source in (r for r in resources if isinstance(r, Source)):
            if source.spec.trigger_workflow not in given:
                print(
                    f"warning: {source.ref}: spec.triggerWorkflow "
                    f"{source.spec.trigger_workflow!r} is not among the given Workflows",
                    file=sys.stderr,
                )
    documents: list[dict[str, Any]] = []
    for compiled in compile_resources(resources, Defaults(image=args.runtime_image)):
        for warning in compiled.warnings:
            print(f"warning: {compiled.workflow.ref}: {warning}", file=sys.stderr)
        documents += compiled.documents
    if args.namespace:
        for document in documents:
            document["metadata"]["namespace"] = args.namespace
    if args.output == "json":
        listing = {"apiVersion": "v1", "kind": "List", "items": documents}
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump_all(documents, sort_keys=False, width=100))
    return EXIT_OK
