"""The `punchingfist` command: compile Workflows to Argo, print CRDs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from punchingfist import __version__
from punchingfist.api import OperatorConfig, Resource, Source, Workflow, load_resources
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.api.crds import render_crds
from punchingfist.api.resources import format_validation_error
from punchingfist.compiler import compile_resources
from punchingfist.errors import InvalidInput, InvalidResource, PunchingFistError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
_YAML_SUFFIXES = (".yaml", ".yml", ".json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="punchingfist",
        description="Punching Fist: AI-assisted incident response on Argo Workflows.",
    )
    parser.add_argument("--version", action="version", version=f"punchingfist {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

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
        "-f", "--filename", action="append", required=True, metavar="FILE",
        help="YAML file or directory (read recursively); '-' reads stdin. Repeatable.",
    )  # fmt: skip
    compile_.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    compile_.add_argument(
        "--workflow", action="append", metavar="NAME",
        help="compile only this Workflow (repeatable; default: every Workflow given)",
    )  # fmt: skip
    compile_.add_argument(
        "--operator-config", metavar="NAME",
        help="which OperatorConfig to use when the input holds several",
    )  # fmt: skip
    compile_.add_argument("-n", "--namespace", help="namespace to put on the emitted objects")
    compile_.set_defaults(handler=_compile)

    crds = commands.add_parser(
        "crds",
        help="print (or write) the CustomResourceDefinitions",
        description="Print the punchingfist.io CRDs generated from the API models.",
    )
    crds.add_argument("-d", "--output-dir", metavar="DIR", help="write one file per CRD here")
    crds.set_defaults(handler=_crds)

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
    event.add_argument("--alert", type=int, default=0, metavar="N",
                       help="which alert of the payload (default: the first)")  # fmt: skip
    event.set_defaults(handler=_event)

    serve = commands.add_parser(
        "serve",
        help="run the server: on resources from YAML files, or with the controller in a cluster",
        description=(
            "Serve the Alertmanager webhook of every webhook Source, the read API (/api/v1/...), "
            "/metrics, /healthz and /readyz. With -f, on resources loaded from YAML files (no "
            "Kubernetes needed; runs wait in the outbox unless --executor argo). With "
            "--in-cluster, the controller runs in the same process: it compiles Workflow CRs "
            "into WorkflowTemplates and the server serves the Sources and Workflows of "
            "--namespace as they change; runs go to Argo."
        ),
    )
    serve.add_argument(
        "-f", "--filename", action="append", metavar="PATH",
        help="YAML file or directory of Sources, Workflows, Sinks (repeatable)",
    )  # fmt: skip
    serve.add_argument("--in-cluster", action="store_true",
                       help="read resources from the cluster and run the controller")  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--database-url", help="default: $PUNCHINGFIST_DATABASE_URL or SQLite")
    serve.add_argument("--secrets-dir", metavar="DIR",
                       help="Secrets as files DIR/NAME/KEY (webhook credentials)")  # fmt: skip
    serve.add_argument(
        "--namespace",
        default="default",
        help="namespace runs are created in (and, --in-cluster, watched)",
    )
    serve.add_argument(
        "--executor", choices=("none", "argo"),
        help="start queued runs on Argo (kubeconfig or in-cluster); `none` keeps them queued "
        "(default: argo with --in-cluster, else none)",
    )  # fmt: skip
    serve.add_argument(
        "--kubeconfig", help="kubeconfig (default: the service account, else ~/.kube/config)"
    )
    _controller_arguments(serve)
    serve.set_defaults(handler=_serve)

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
    scope.add_argument("-n", "--namespace", action="append", metavar="NS",
                       help="namespace to watch (repeatable; default: default)")  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="watch every namespace")  # fmt: skip
    controller.add_argument(
        "--liveness",
        metavar="URL",
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8081/healthz",
    )
    _controller_arguments(controller)
    controller.set_defaults(handler=_controller)

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
    return parser


def _compile(args: argparse.Namespace) -> int:
    resources = list(_read(args.filename))
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
    for compiled in compile_resources(resources):
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


def _controller_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controller")
    group.add_argument(
        "--operator-config",
        default="punchingfist-config",
        metavar="NAME",
        help="the OperatorConfig (in each Workflow's namespace) to compile with",
    )
    group.add_argument("--peering", metavar="NAME",
                       help="elect a leader among replicas through this Kopf peering object "
                       "(default: run standalone)")  # fmt: skip
    group.add_argument("--priority", type=int, default=0, help="peering priority")
    group.add_argument(
        "--admission-port",
        type=int,
        metavar="PORT",
        help="serve the validating admission webhook (HTTPS) on this port",
    )
    group.add_argument("--admission-addr", default="0.0.0.0", metavar="ADDR")
    group.add_argument("--admission-host", metavar="HOST",
                       help="host name of the webhook URL (default: the address)")  # fmt: skip
    group.add_argument("--admission-cert", metavar="FILE", help="serving certificate (PEM)")
    group.add_argument("--admission-key", metavar="FILE", help="its private key (PEM)")
    group.add_argument("--admission-ca", metavar="FILE",
                       help="CA bundle the API server checks the certificate with")  # fmt: skip
    group.add_argument("--admission-managed", metavar="NAME",
                       help="keep a ValidatingWebhookConfiguration of this name up to date "
                       "(default: it is installed with the chart)")  # fmt: skip


def _controller_options(args: argparse.Namespace, namespaces: Sequence[str],
                        clusterwide: bool = False) -> Any:  # fmt: skip
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
            addr=args.admission_addr, port=args.admission_port, host=args.admission_host,
            certfile=args.admission_cert, pkeyfile=args.admission_key, cafile=args.admission_ca,
            managed=args.admission_managed,
        )  # fmt: skip
    return ControllerOptions(
        namespaces=tuple(namespaces), clusterwide=clusterwide,
        operator_config=args.operator_config, peering=args.peering, priority=args.priority,
        admission=admission,
    )  # fmt: skip


def _controller(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from punchingfist.controller import connect, run_operator

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    options = _controller_options(args, args.namespace or ["default"], args.all_namespaces)
    controller = connect(args.kubeconfig, options=options)
    where = "all namespaces" if options.clusterwide else ", ".join(options.namespaces)
    print(f"punchingfist {__version__}: controller watching {where}", file=sys.stderr)
    asyncio.run(run_operator(controller, liveness_endpoint=args.liveness))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from punchingfist.server import ServerState, create_app
    from punchingfist.server.state import SecretStore
    from punchingfist.store import database_url, upgrade

    if args.in_cluster == bool(args.filename):
        raise PunchingFistError("give either -f FILE (resources from files) or --in-cluster")
    resources = list(_read(args.filename)) if args.filename else []
    url = database_url(args.database_url)
    revision = upgrade(url)
    executor = None
    if (args.executor or ("argo" if args.in_cluster else "none")) == "argo":
        from punchingfist.executors.argo import ArgoExecutor

        executor = ArgoExecutor(args.kubeconfig)
    secrets = SecretStore(Path(args.secrets_dir) if args.secrets_dir else None)
    config = next((r.spec for r in resources if isinstance(r, OperatorConfig)), None)
    approvers = frozenset(config.approvals.approvers) if config and config.approvals else None
    signing = (
        config.chat.slack.signing_secret if config and config.chat and config.chat.slack else None
    )
    state = ServerState.from_resources(
        resources, url, namespace=args.namespace, executor=executor, secrets=secrets,
        approvers=approvers or frozenset(),
        slack_signing_secret=secrets.get(signing.secret_ref, signing.key) if signing else None,
        report_token=os.environ.get("PUNCHINGFIST_REPORT_TOKEN") or None,
    )  # fmt: skip
    app = create_app(state)
    operator = _start_controller(args, state, app) if args.in_cluster else None
    paths = ", ".join(sorted(state.webhook_paths()))
    counts = f"{len(state.sources)} Sources, {len(state.workflows)} Workflows"
    mode = f"controller on namespace {args.namespace}; " if operator else ""
    print(f"punchingfist {__version__}: {mode}{counts}; database at revision {revision}; "
          f"webhooks: {paths}", file=sys.stderr)  # fmt: skip
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: let that one be
    # a no-op so the controller thread is stopped too and the exit status is 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info",
                    access_log=True)  # fmt: skip
    finally:
        if operator is not None:
            operator.stop()
            print("punchingfist: controller stopped", file=sys.stderr)
    return EXIT_OK


def _start_controller(args: argparse.Namespace, state: Any, app: Any) -> Any:
    """Kopf in its own thread; the Sources and Workflows of the namespace feed the server."""
    import logging

    from punchingfist.controller import Catalog, OperatorThread, connect
    from punchingfist.server import add_webhook_routes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    namespace = args.namespace
    controller = connect(args.kubeconfig, options=_controller_options(args, [namespace]))

    def refresh(catalog: Catalog) -> None:
        state.sources = catalog.sources(namespace)
        state.workflows = catalog.workflows(namespace)
        found = catalog.config(namespace, args.operator_config)
        approvals = found.spec.approvals if found else None
        state.approvers = frozenset(approvals.approvers) if approvals else frozenset()
        add_webhook_routes(app)

    controller.catalog.subscribe(refresh)
    operator = OperatorThread(controller)

    def running() -> str | None:
        if not operator.alive:
            return f"the controller stopped: {operator.error or 'no reason given'}"
        return None if operator.ready.is_set() else "the controller is starting"

    state.probes.append(running)
    operator.start()
    return operator


def _db_upgrade(args: argparse.Namespace) -> int:
    from punchingfist.store import upgrade

    revision = upgrade(args.database_url)
    print(f"database at revision {revision}")
    return EXIT_OK


def _db_current(args: argparse.Namespace) -> int:
    from punchingfist.store import current_revision

    print(current_revision(args.database_url) or "empty (run `punchingfist db upgrade`)")
    return EXIT_OK


def _event(args: argparse.Namespace) -> int:
    origin, text = next(_texts([args.filename]))
    try:
        payload = AlertmanagerPayload.model_validate_json(text)
    except ValidationError as error:
        problems = format_validation_error(error, _loose_json(text), prefix="payload")
        raise InvalidResource(origin, problems, what="Alertmanager payload") from error
    if not 0 <= args.alert < len(payload.alerts):
        raise PunchingFistError(f"{origin}: --alert {args.alert}: the payload has "
                                f"{len(payload.alerts)} alert(s)")  # fmt: skip
    sys.stdout.write(json.dumps(event_from_payload(payload, args.alert), ensure_ascii=False) + "\n")
    return EXIT_OK


def _loose_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _read(paths: Sequence[str]) -> Iterator[Resource[Any]]:
    problems: list[PunchingFistError] = []
    for origin, text in _texts(paths):
        try:
            yield from load_resources(text, origin=origin)
        except InvalidInput as error:
            problems += error.errors
        except PunchingFistError as error:
            problems.append(error)
    if problems:
        raise InvalidInput(problems)


def _texts(paths: Sequence[str]) -> Iterator[tuple[str, str]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in _YAML_SUFFIXES)
            files = [p for p in files if p.suffix != ".json" or _is_resource_json(p)]
        elif path.exists():
            files = [path]
        else:
            raise PunchingFistError(f"{raw}: no such file or directory")
        for file in files:
            try:
                yield str(file), file.read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise PunchingFistError(f"{file}: cannot read: {error}") from error


def _is_resource_json(path: Path) -> bool:
    """JSON files in a directory are read only when they are Kubernetes objects (not alerts)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # let the loader report it
    return isinstance(data, dict) and "apiVersion" in data and "kind" in data


if __name__ == "__main__":
    sys.exit(main())
