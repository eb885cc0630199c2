"""`punchingfist submit`: start an investigation now from a compiled WorkflowTemplate."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from punchingfist.api.runspec import RunParameters
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.cli.inputs import alert_event
from punchingfist.errors import PunchingFistError
from punchingfist.kube import context_namespace


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = commands.add_parser(
        "submit",
        help="start an investigation now from a compiled WorkflowTemplate",
        description=(
            "Create an Argo Workflow from the WorkflowTemplate of a Workflow, as "
            "`argo submit --from workflowtemplate/NAME` does, with the event built from an "
            "Alertmanager payload (--alert) and/or --set values; print its name and Argo UI link."
        ),
    )
    submit.add_argument("workflow", metavar="WORKFLOW", help="the Workflow (WorkflowTemplate)")
    submit.add_argument("--alert", metavar="FILE", help="Alertmanager webhook payload; '-' = stdin")
    submit.add_argument(
        "--index",
        type=int,
        default=0,
        metavar="N",
        help="which alert of the payload (default: the first)",
    )
    submit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="values",
        help="an event value (dotted keys nest: alert.labels.namespace=prod; JSON values are "
        "parsed: replicas=3); applied after --alert. Repeatable.",
    )
    submit.add_argument("--source", default="manual", help="the run's source (default: manual)")
    submit.add_argument(
        "-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)"
    )
    submit.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    submit.add_argument(
        "--argo-ui",
        metavar="URL",
        default=os.environ.get("ARGO_UI_URL"),
        help="Argo UI base URL for the link (default: $ARGO_UI_URL)",
    )
    submit.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.runs.dispatching import RunSubmission, SubmitError

    event: dict[str, Any] = {}
    fingerprint = ""
    if args.alert:
        event, fingerprint = alert_event(args.alert, args.index, "--index")
    for item in args.values:
        _set_value(event, item)
    namespace = args.namespace or context_namespace(args.kubeconfig)
    argo = ArgoExecutor(args.kubeconfig)
    try:
        if not argo.template_exists(args.workflow, namespace):
            raise PunchingFistError(
                f"there is no WorkflowTemplate {args.workflow!r} in namespace {namespace!r}: "
                "compile and apply the Workflow first (punchingfist compile -f FILE | "
                "kubectl apply -f -)"
            )
        name = f"{args.workflow[:57]}-{_suffix()}"
        parameters = RunParameters(event, args.source, fingerprint).stored()
        argo.submit(RunSubmission(name, namespace, args.workflow, parameters))
    except SubmitError as error:
        raise PunchingFistError(str(error)) from error
    print(name)
    if args.argo_ui:
        print(f"{args.argo_ui.rstrip('/')}/workflows/{namespace}/{name}")
    else:
        print(
            f"(no Argo UI link: give --argo-ui URL or set ARGO_UI_URL; or run "
            f"`argo watch {name} -n {namespace}`)",
            file=sys.stderr,
        )
    return EXIT_OK


def _set_value(event: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or any(not part for part in key.split(".")):
        raise PunchingFistError(f"--set {item!r}: write KEY=VALUE, e.g. alert.alertname=X")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    *parents, leaf = key.strip().split(".")
    here = event
    for part in parents:
        child = here.get(part)
        if not isinstance(child, dict):
            child = here[part] = {}
        here = child
    here[leaf] = value


def _suffix() -> str:
    import secrets

    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
    return "".join(secrets.choice(alphabet) for _ in range(5))
