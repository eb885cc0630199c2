"""`punchingfist controller`: the controller alone; its options, which `serve` shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from punchingfist import __version__
from punchingfist.cli.compile import runtime_image_argument
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.compiler import Defaults
from punchingfist.errors import PunchingFistError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    controller = commands.add_parser(
        "controller",
        help="run the controller alone (Workflow CRs -> WorkflowTemplates, status, admission)",
        description=(
            "Watch Source, Workflow, Sink and OperatorConfig resources; compile each Workflow "
            "into an Argo WorkflowTemplate (server-side apply, owned by the Workflow) and report "
            "in status; optionally serve the validating admission webhook. Stops on SIGTERM."
        ),
    )
    controller.add_argument(
        "--kubeconfig", help="kubeconfig (default: the service account, else ~/.kube/config)"
    )
    scope = controller.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        metavar="NS",
        help="namespace to watch (repeatable; default: default)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    controller.add_argument(
        "--liveness",
        metavar="URL",
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    controller_arguments(controller)
    controller.set_defaults(handler=_controller)


def controller_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controller")
    runtime_image_argument(group)
    group.add_argument(
        "--operator-config",
        default="punchingfist-config",
        metavar="NAME",
        help="the OperatorConfig (in each Workflow's namespace) to compile with",
    )
    group.add_argument(
        "--peering",
        metavar="NAME",
        help="elect a leader among replicas through this Kopf peering object "
        "(default: run standalone)",
    )
    group.add_argument("--priority", type=int, default=0, help="peering priority")
    group.add_argument(
        "--resync-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="check every unchanged Workflow this often (e.g. 300): a template that went "
        "missing or stale is applied again (default 0: only on changes and at start-up)",
    )
    group.add_argument(
        "--step-start-timeout",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="a step pod that cannot start this long (its image cannot be pulled, a Secret it "
        "needs is missing) stops its run, with the reason in the run's record (default 180)",
    )
    group.add_argument(
        "--admission-port",
        type=int,
        metavar="PORT",
        help="serve the validating admission webhook (HTTPS) on this port",
    )
    group.add_argument("--admission-addr", default="0.0.0.0", metavar="ADDR")
    group.add_argument(
        "--admission-host",
        metavar="HOST",
        help="host name of the webhook URL (default: the address)",
    )
    group.add_argument("--admission-cert", metavar="FILE", help="serving certificate (PEM)")
    group.add_argument("--admission-key", metavar="FILE", help="its private key (PEM)")
    group.add_argument(
        "--admission-ca",
        metavar="FILE",
        help="CA bundle the API server checks the certificate with",
    )
    group.add_argument(
        "--admission-managed",
        metavar="NAME",
        help="keep a ValidatingWebhookConfiguration of this name up to date "
        "(default: it is installed with the chart)",
    )


def controller_options(
    args: argparse.Namespace, namespaces: Sequence[str], clusterwide: bool = False
) -> Any:
    from punchingfist.controller import AdmissionOptions, ControllerOptions

    admission = None
    if args.admission_port is not None:
        if bool(args.admission_cert) != bool(args.admission_key):
            raise PunchingFistError("--admission-cert and --admission-key go together")
        if args.admission_managed and "." not in args.admission_managed:
            raise PunchingFistError(
                f"--admission-managed {args.admission_managed!r}: webhook names are "
                "<kind>.<NAME> and must be domains; use e.g. validate.punchingfist.io"
            )
        admission = AdmissionOptions(
            addr=args.admission_addr,
            port=args.admission_port,
            host=args.admission_host,
            certfile=args.admission_cert,
            pkeyfile=args.admission_key,
            cafile=args.admission_ca,
            managed=args.admission_managed,
        )
    return ControllerOptions(
        namespaces=tuple(namespaces),
        clusterwide=clusterwide,
        operator_config=args.operator_config,
        peering=args.peering,
        priority=args.priority,
        admission=admission,
        resync=args.resync_interval if args.resync_interval > 0 else None,
        defaults=Defaults(image=args.runtime_image),
    )


def _controller(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from punchingfist.controller import connect, run_operator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = controller_options(args, args.namespace or ["default"], args.all_namespaces)
    controller = connect(args.kubeconfig, options=options)
    where = "all namespaces" if options.clusterwide else ", ".join(options.namespaces)
    print(f"punchingfist {__version__}: controller watching {where}", file=sys.stderr)
    asyncio.run(run_operator(controller, liveness_endpoint=args.liveness))
    return EXIT_OK
