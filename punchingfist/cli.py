"""The `punchingfist` command: compile Workflows, serve, submit runs, answer approval gates."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
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
from punchingfist.api.workflows import DEFAULT_IMAGE
from punchingfist.compiler import Defaults, compile_resources
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
    _runtime_image_argument(compile_)
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
    event.add_argument(
        "--alert",
        type=int,
        default=0,
        metavar="N",
        help="which alert of the payload (default: the first)",
    )
    event.set_defaults(handler=_event)

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

    approve = commands.add_parser(
        "approve",
        help="answer a run's approval gate (approve, or deny with --deny)",
        description=(
            "Answer the approval gate of a run. With --server, through the server's REST API "
            "(recorded there). Otherwise directly against the cluster: the suspend node is "
            "resumed as `argo node set` + `argo resume` do, with the approver being the "
            "Kubernetes user of the credentials (checked against an OperatorConfig's "
            "spec.approvals.approvers in the namespace, when one lists approvers); the run "
            "tracker records the answer from the node."
        ),
    )
    approve.add_argument("run", metavar="RUN", help="the run (Argo Workflow) name")
    approve.add_argument(
        "--step", metavar="NAME", help="the gated step (default: the one gate the run waits at)"
    )
    approve.add_argument("--deny", action="store_true", help="deny instead of approving")
    approve.add_argument("--comment", default="", help="a note kept with the decision")
    where = approve.add_mutually_exclusive_group()
    where.add_argument(
        "--server", metavar="URL", help="the Punching Fist server, e.g. http://punchingfist:8080"
    )
    where.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    approve.add_argument(
        "--approver",
        help="who decides, with --server and the embedded API token (otherwise the server "
        "knows who the token is and this must match it)",
    )
    approve.add_argument(
        "--token-file",
        metavar="PATH",
        help="with --server: the bearer token to send (default: $PUNCHINGFIST_TOKEN, else "
        "$PUNCHINGFIST_APPROVER_TOKEN)",
    )
    approve.add_argument(
        "-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)"
    )
    approve.set_defaults(handler=_approve)

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
        "-f",
        "--filename",
        action="append",
        metavar="PATH",
        help="YAML file or directory of Sources, Workflows, Sinks (repeatable)",
    )
    serve.add_argument(
        "--in-cluster",
        action="store_true",
        help="read resources from the cluster and run the controller",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--database-url", help="default: $PUNCHINGFIST_DATABASE_URL or SQLite")
    serve.add_argument(
        "--secrets-dir", metavar="DIR", help="Secrets as files DIR/NAME/KEY (webhook credentials)"
    )
    serve.add_argument(
        "--intake-writers",
        type=int,
        default=1,
        metavar="N",
        help="PostgreSQL: threads storing webhook notifications, each on its own connection "
        "(default 1, up to 8; more overlap round trips to a database across a network)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="PostgreSQL, -f: server processes sharing the port, each storing webhook "
        "notifications on its own (default 1; one per core takes the most alerts/s)",
    )
    serve.add_argument(
        "--namespace",
        default="default",
        help="namespace runs are created in (and, --in-cluster, watched)",
    )
    serve.add_argument(
        "--executor",
        choices=("none", "argo", "local"),
        help="start queued runs on Argo (kubeconfig or in-cluster), or here on the local engine "
        "(embedded mode); `none` keeps them queued (default: argo with --in-cluster, else none)",
    )
    serve.add_argument(
        "--workdir",
        metavar="DIR",
        help="--executor local: where run files go (default: ./punchingfist-runs)",
    )
    serve.add_argument(
        "--replay",
        metavar="SCENARIO_DIR",
        help="--executor local: answer every agent step with this scenario's recorded model "
        "turns (no model runs; labelled everywhere; several folders: separated by ':'). Without "
        "it, runs with agent steps need a model: serve never replays on its own",
    )
    serve.add_argument(
        "--llm-endpoint",
        metavar="URL",
        help="--executor local: an OpenAI-compatible API for every agent step",
    )
    serve.add_argument("--llm-model", metavar="NAME", help="the model at --llm-endpoint")
    serve.add_argument(
        "--kubeconfig", help="kubeconfig (default: the service account, else ~/.kube/config)"
    )
    serve.add_argument(
        "--auth",
        choices=("kubernetes", "token"),
        help="who may call /api/v1 (read, approve, trigger, report): `kubernetes` checks bearer "
        "tokens with TokenReview and authorizes with SubjectAccessReview on punchingfist.io "
        "resources (RBAC); `token` checks one API token kept in --api-token-file (made at first "
        "start). Default: kubernetes with --in-cluster, else token",
    )
    serve.add_argument(
        "--api-token-file",
        metavar="PATH",
        help="--auth token: the API token's file, made 0600 when missing (default: "
        "api-token beside the SQLite database, else ~/.local/state/punchingfist/api-token)",
    )
    serve.add_argument(
        "--insecure-open-api",
        action="store_true",
        help="DANGEROUS: no credentials needed for /api/v1: anyone who reaches the server may "
        "read every alert, approve fixes and forge step reports",
    )
    _controller_arguments(serve)
    serve.set_defaults(handler=_serve)

    run = commands.add_parser(
        "run",
        help="run one Workflow here, on the local engine (no cluster needed)",
        description=(
            "Compile a Workflow and run it on this machine: every step as a local process, the "
            "step tree and the agent's tool calls shown live, approval gates asked on the "
            "terminal (or answered by --approve/--deny), then the investigation printed. "
            "The model: --replay, --llm-endpoint, the Workflow's own provider when it answers, "
            "Ollama on localhost:11434, else a recorded scenario about the same alert, "
            "labelled 'replayed model'."
        ),
    )
    run.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="YAML file or directory of Workflows, Sinks, Sources, OperatorConfig (repeatable)",
    )
    run.add_argument(
        "--event",
        required=True,
        metavar="FILE",
        help="Alertmanager webhook payload (or a run event) as JSON; '-' = stdin",
    )
    run.add_argument(
        "--alert",
        type=int,
        default=0,
        metavar="N",
        help="which alert of the payload (default: the first)",
    )
    run.add_argument("--workflow", metavar="NAME", help="which Workflow (when several are given)")
    answer = run.add_mutually_exclusive_group()
    answer.add_argument("--approve", action="store_true", help="approve every approval gate")
    answer.add_argument("--deny", action="store_true", help="deny every approval gate")
    run.add_argument("--approver", help="who answers with --approve/--deny (default: $USER)")
    run.add_argument("--comment", help="the comment recorded with --approve/--deny")
    run.add_argument(
        "--replay",
        metavar="SCENARIO_DIR",
        help="replay the recorded model turns of a scenario folder (several: separated by ':')",
    )
    run.add_argument(
        "--llm-endpoint",
        metavar="URL",
        help="an OpenAI-compatible API for every agent step (default: $PUNCHINGFIST_LLM_ENDPOINT)",
    )
    run.add_argument("--llm-model", metavar="NAME", help="the model at --llm-endpoint")
    run.add_argument(
        "--secrets-dir",
        metavar="DIR",
        help="Secrets as files DIR/NAME/KEY (else from env variables of the same "
        "name as the step's, e.g. SLACK_BOT_TOKEN)",
    )
    run.add_argument(
        "--workdir",
        metavar="DIR",
        help="where each step's files go (default: a new temporary directory)",
    )
    run.add_argument("-o", "--output", choices=("text", "json"), default="text")
    run.add_argument("-q", "--quiet", action="store_true", help="no live progress on stderr")
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="the whole loop on this machine: an alert in, an investigation run, a report out",
        description=(
            "Start the embedded server on the examples (SQLite in a temporary directory, the "
            "local engine as executor), fire the sample crash-loop alert at its webhook, let the "
            "design document's triage workflow run, and show the stored alert, incident, run "
            "and report. Offline: with no model configured it replays a recorded scenario."
        ),
    )
    demo.add_argument(
        "--examples",
        default=None,
        metavar="DIR",
        help="the examples folder (default: the one beside this package)",
    )
    demo.add_argument("--keep", metavar="DIR", help="keep the database and run files in DIR")
    demo.add_argument("--llm-endpoint", metavar="URL", help="use this model instead of a replay")
    demo.add_argument("--llm-model", metavar="NAME", help="the model at --llm-endpoint")
    demo.set_defaults(handler=_demo)

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


def _runtime_image_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--runtime-image",
        default=DEFAULT_IMAGE,
        metavar="IMAGE",
        help="image of the steps of Workflows that name none in spec.runtime.image (default: "
        f"{DEFAULT_IMAGE}; the chart passes the image the operator runs)",
    )


def _controller_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("controller")
    _runtime_image_argument(group)
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


def _controller_options(
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
    options = _controller_options(args, args.namespace or ["default"], args.all_namespaces)
    controller = connect(args.kubeconfig, options=options)
    where = "all namespaces" if options.clusterwide else ", ".join(options.namespaces)
    print(f"punchingfist {__version__}: controller watching {where}", file=sys.stderr)
    asyncio.run(run_operator(controller, liveness_endpoint=args.liveness))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from sqlalchemy import make_url

    from punchingfist.runs.metrics import use_multiprocess
    from punchingfist.server import ServerState, create_app
    from punchingfist.server.batching import MAX_WRITERS, writers_fit
    from punchingfist.server.state import SecretStore
    from punchingfist.store import database_url, upgrade

    if args.in_cluster == bool(args.filename):
        raise PunchingFistError("give either -f FILE (resources from files) or --in-cluster")
    resources = list(_read(args.filename)) if args.filename else []
    url = database_url(args.database_url)
    backend = make_url(url).get_backend_name()
    if not writers_fit(args.intake_writers, backend):
        raise PunchingFistError(
            f"--intake-writers {args.intake_writers}: give 1, or up to "
            f"{MAX_WRITERS} with a PostgreSQL --database-url"
        )
    _check_workers(args, backend)
    revision = upgrade(url)
    metrics_dir = None
    if args.workers > 1:  # before the first metric is made
        metrics_dir = tempfile.mkdtemp(prefix="punchingfist-metrics-")
        use_multiprocess(metrics_dir)
    executor: Any = None
    if (args.executor or ("argo" if args.in_cluster else "none")) == "argo":
        from punchingfist.executors.argo import ArgoExecutor

        executor = ArgoExecutor(args.kubeconfig)
    secrets = SecretStore(Path(args.secrets_dir) if args.secrets_dir else None)
    config = next((r.spec for r in resources if isinstance(r, OperatorConfig)), None)
    approvers = frozenset(config.approvals.approvers) if config and config.approvals else None
    tokens = approver_tokens(config.approvals if config else None, secrets)
    if tokens == {}:
        assert config is not None and config.approvals is not None
        raise PunchingFistError(
            f"spec.approvals.tokensSecret {config.approvals.tokens_secret!r}: no tokens found "
            f"(give --secrets-dir DIR with DIR/{config.approvals.tokens_secret}/APPROVER files)"
        )
    signing = (
        config.chat.slack.signing_secret if config and config.chat and config.chat.slack else None
    )
    state = ServerState.from_resources(
        resources,
        url,
        namespace=args.namespace,
        executor=executor,
        secrets=secrets,
        approvers=approvers or frozenset(),
        approver_tokens=tokens,
        slack_signing_secret=secrets.get(signing.secret_ref, signing.key) if signing else None,
        intake_writers=args.intake_writers,
        access=_access(args, url),
    )
    if args.executor == "local":
        if args.in_cluster:
            raise PunchingFistError(
                "--executor local runs resources from files: use -f, not --in-cluster"
            )
        state.executor = local_executor(resources, state, args)
    elif args.replay:
        raise PunchingFistError(
            "--replay answers agent steps on the local engine: add --executor local"
        )
    app = create_app(state)
    operator = _start_controller(args, state, app) if args.in_cluster else None
    for source in state.sources:
        config = source.spec.config
        if getattr(config, "path", None) and getattr(config, "authentication", None) is None:
            print(
                f"punchingfist: warning: webhook Source {source.name} has no authentication: "
                f"anyone who reaches {config.path} can post alerts (set "
                "spec.config.authentication)",
                file=sys.stderr,
            )
    paths = ", ".join(sorted(state.webhook_paths()))
    counts = f"{len(state.sources)} Sources, {len(state.workflows)} Workflows"
    mode = f"controller on namespace {args.namespace}; " if operator else ""
    print(
        f"punchingfist {__version__}: {mode}{counts}; database at revision {revision}; "
        f"webhooks: {paths}",
        file=sys.stderr,
    )
    if metrics_dir is not None:
        try:
            return _serve_workers(args, app, state)
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: let that one be
    # a no-op so the controller thread is stopped too and the exit status is 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=True)
    finally:
        if operator is not None:
            operator.stop()
            print("punchingfist: controller stopped", file=sys.stderr)
    return EXIT_OK


def _access(args: argparse.Namespace, url: str) -> Any:
    """Who may call the control surface (D13), said on stderr at start."""
    from punchingfist.server.access import (
        KubernetesAccess,
        OpenAccess,
        TokenAccess,
        load_or_create_token,
    )

    if args.insecure_open_api:
        if args.auth or args.api_token_file:
            raise PunchingFistError(
                "--insecure-open-api turns authentication off: drop --auth and --api-token-file, "
                "or drop --insecure-open-api"
            )
        print(
            "punchingfist: WARNING: --insecure-open-api: /api/v1 needs NO credentials. Anyone "
            "who can reach this server can read every alert and run, approve fixes and forge "
            "step reports. Never expose it beyond this machine.",
            file=sys.stderr,
        )
        return OpenAccess()
    mode = args.auth or ("kubernetes" if args.in_cluster else "token")
    if mode == "kubernetes":
        if args.api_token_file:
            raise PunchingFistError("--api-token-file is for --auth token")
        from punchingfist.executors.argo import kube_api_client

        access: Any = KubernetesAccess(kube_api_client(args.kubeconfig), args.namespace)
    else:
        path = _api_token_path(args.api_token_file, url)
        try:
            token, created = load_or_create_token(path)
        except (OSError, ValueError) as error:
            raise PunchingFistError(f"API token: {error}") from error
        access = TokenAccess(token, where=str(path))
        made = "made now" if created else "kept"
        print(
            f"punchingfist: /api/v1 needs `Authorization: Bearer <token>`; the API token is in "
            f"{path} ({made}, mode 0600)",
            file=sys.stderr,
        )
        return access
    print(f"punchingfist: /api/v1 callers: {access.description}", file=sys.stderr)
    return access


def _api_token_path(given: str | None, url: str) -> Path:
    """--api-token-file, else `api-token` beside a SQLite database file, else in the user's
    state directory."""
    from sqlalchemy import make_url

    if given:
        return Path(given).expanduser().resolve()
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if database and database != ":memory:":
        return Path(database).resolve().parent / "api-token"
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state_home / "punchingfist" / "api-token"


def _check_workers(args: argparse.Namespace, backend: str) -> None:
    from punchingfist.server.workers import MAX_WORKERS

    if not 1 <= args.workers <= MAX_WORKERS:
        raise PunchingFistError(f"--workers {args.workers}: give 1 to {MAX_WORKERS}")
    if args.workers == 1:
        return
    if backend != "postgresql":
        raise PunchingFistError(
            f"--workers {args.workers}: several server processes need a PostgreSQL "
            "--database-url (SQLite has one writer at a time)"
        )
    if args.in_cluster:
        raise PunchingFistError(
            f"--workers {args.workers} with --in-cluster is not supported yet: the controller "
            "feeds its Sources to one process; run one worker per pod"
        )


def _serve_workers(args: argparse.Namespace, app: Any, state: Any) -> int:
    """`--workers N`: N forked server processes, handed the connections this one accepts in
    turn; worker 0 dispatches runs."""
    import uvicorn

    from punchingfist.server.workers import HandedConnectionsServer, listening_socket, supervise

    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    executor = state.executor

    def run(number: int, channel: Any) -> None:
        state.engine.dispose(close=False)  # the parent's pooled connections are not this one's
        state.executor = executor if number == 0 else None
        config = uvicorn.Config(app, host=args.host, port=port, log_level="info", access_log=True)
        HandedConnectionsServer(config, channel).run()

    try:
        return supervise(args.workers, run, sock)
    finally:
        sock.close()


def approver_tokens(approvals: Any, secrets: Any) -> dict[str, str] | None:
    """Approver -> token from OperatorConfig `spec.approvals.tokensSecret`; None when there is
    none. Such a token authenticates its owner, who may read and approve (server.access)."""
    if approvals is None or not approvals.tokens_secret:
        return None
    return {name: token for name, token in secrets.keys(approvals.tokens_secret).items() if token}


def local_executor(resources: list[Resource[Any]], state: Any, args: argparse.Namespace) -> Any:
    """The local engine as the server's executor: every Workflow compiled once, up front."""
    from punchingfist.executors.local import LocalExecutor

    compiled = {c.workflow.name: c for c in compile_resources(resources)}
    if args.replay:
        print(
            f"⚠️  --replay {args.replay}: every agent step answers with recorded turns; NO "
            "MODEL RUNS. Results are labelled 'replayed model' and not recorded as triage.",
            file=sys.stderr,
        )
    return LocalExecutor(
        compiled,
        state.sessions,
        Path(args.workdir or "punchingfist-runs").resolve(),
        environ=dict(os.environ),
        secrets_dir=Path(args.secrets_dir) if args.secrets_dir else None,
        replay=args.replay,
        endpoint=args.llm_endpoint,
        model=args.llm_model,
        metrics=state.metrics,
    )


def _run(args: argparse.Namespace) -> int:
    from punchingfist.embedded.commands import run_command

    return run_command(args, list(_read(args.filename)))


def _demo(args: argparse.Namespace) -> int:
    from punchingfist.embedded.demo import run_demo

    return run_demo(args)


def _start_controller(args: argparse.Namespace, state: Any, app: Any) -> Any:
    """Kopf in its own thread; the Sources and Workflows of the namespace feed the server."""
    import logging

    from punchingfist.controller import Catalog, OperatorThread, build_registry, connect
    from punchingfist.server import add_source_routes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    namespace = args.namespace
    controller = connect(args.kubeconfig, options=_controller_options(args, [namespace]))

    def refresh(catalog: Catalog) -> None:
        state.sources = catalog.sources(namespace)
        state.workflows = catalog.workflows(namespace)
        found = catalog.config(namespace, args.operator_config)
        approvals = found.spec.approvals if found else None
        state.approvers = frozenset(approvals.approvers) if approvals else frozenset()
        state.approver_tokens = approver_tokens(approvals, state.secrets)
        if state.approver_tokens == {}:
            logging.getLogger("punchingfist.server").error(
                "spec.approvals.tokensSecret %r holds no tokens: approvers without a "
                "Kubernetes identity cannot answer until it does",
                approvals.tokens_secret if approvals else "",
            )
        add_source_routes(app)

    controller.catalog.subscribe(refresh)
    registry = build_registry(controller)
    # With the store at hand, the same operator tracks runs and runs the Sources' handlers.
    from punchingfist.controller import sources, tracking
    from punchingfist.controller.stalls import Watchdog
    from punchingfist.executors.argo import ArgoExecutor

    argo = (
        state.executor
        if isinstance(state.executor, ArgoExecutor)
        else ArgoExecutor(args.kubeconfig)
    )
    watchdog = Watchdog(argo.get, argo.stop, grace=args.step_start_timeout)
    tracking.register(registry, sessions=state.sessions, metrics=state.metrics, watchdog=watchdog)
    sources.register(registry, sessions=state.sessions, metrics=state.metrics, argo=argo)
    operator = OperatorThread(controller, registry)

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
    event, _ = _alert_event(args.filename, args.alert, "--alert")
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    return EXIT_OK


def _alert_event(filename: str, index: int, option: str) -> tuple[dict[str, Any], str]:
    """The event of alert `index` of an Alertmanager payload file, and its fingerprint."""
    origin, text = next(_texts([filename]))
    try:
        payload = AlertmanagerPayload.model_validate_json(text)
    except ValidationError as error:
        problems = format_validation_error(error, _loose_json(text), prefix="payload")
        raise InvalidResource(origin, problems, what="Alertmanager payload") from error
    if not 0 <= index < len(payload.alerts):
        raise PunchingFistError(
            f"{origin}: {option} {index}: the payload has {len(payload.alerts)} alert(s)"
        )
    return event_from_payload(payload, index), payload.alerts[index].fingerprint


def _submit(args: argparse.Namespace) -> int:
    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.runs.dispatching import RunSubmission, SubmitError

    event: dict[str, Any] = {}
    fingerprint = ""
    if args.alert:
        event, fingerprint = _alert_event(args.alert, args.index, "--index")
    for item in args.values:
        _set_value(event, item)
    namespace = args.namespace or _context_namespace(args.kubeconfig)
    argo = ArgoExecutor(args.kubeconfig)
    try:
        if not argo.template_exists(args.workflow, namespace):
            raise PunchingFistError(
                f"there is no WorkflowTemplate {args.workflow!r} in namespace {namespace!r}: "
                "compile and apply the Workflow first (punchingfist compile -f FILE | "
                "kubectl apply -f -)"
            )
        name = f"{args.workflow[:57]}-{_suffix()}"
        parameters = {"event": event, "source": args.source, "fingerprint": fingerprint}
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


def _context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context (in a pod: its own), else default."""
    from kubernetes import config

    mounted = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if not kubeconfig and mounted.is_file():
        return mounted.read_text().strip() or "default"
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def _approve(args: argparse.Namespace) -> int:
    if args.server:
        return _approve_by_server(args)
    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.runs.dispatching import SubmitError

    namespace = args.namespace or _context_namespace(args.kubeconfig)
    argo = ArgoExecutor(args.kubeconfig)
    try:
        gate = _gate(args.run, args.step, argo.waiting_gates(args.run, namespace))
        approver = argo.whoami()
        allowed = _approvers(argo, namespace)
        if allowed and approver not in allowed:
            raise PunchingFistError(
                f"{approver!r} may not answer approval gates: the OperatorConfig of namespace "
                f"{namespace!r} lists spec.approvals.approvers"
            )
        argo.resume(
            args.run,
            namespace,
            gate,
            approved=not args.deny,
            approver=approver,
            comment=args.comment,
        )
    except SubmitError as error:
        raise PunchingFistError(str(error)) from error
    print(f"{'denied' if args.deny else 'approved'}: {args.run} / {gate} (as {approver})")
    return EXIT_OK


def _gate(run: str, step: str | None, waiting: list[str]) -> str:
    """The gate to answer: `<step>-approval`, or the only one the run waits at."""
    if step:
        gate = f"{step}-approval"
        if gate not in waiting:
            at = ", ".join(waiting) or "no gate"
            raise PunchingFistError(f"run {run} is not waiting at {gate!r} (it waits at {at})")
        return gate
    if len(waiting) != 1:
        at = ", ".join(w.removesuffix("-approval") for w in waiting)
        raise PunchingFistError(
            f"run {run} waits at no approval gate"
            if not waiting
            else f"run {run} waits at several gates; pick one with --step ({at})"
        )
    return waiting[0]


def _approvers(argo: Any, namespace: str) -> set[str]:
    """Approvers listed by the OperatorConfigs of the namespace (empty: RBAC decides)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        listing: dict[str, Any] = client.CustomObjectsApi(  # type: ignore[assignment]
            argo.api_client
        ).list_namespaced_custom_object("punchingfist.io", "v1alpha1", namespace, "operatorconfigs")
    except ApiException as error:
        if error.status in (403, 404):  # no CRD, or no right to read it: RBAC decides
            return set()
        raise PunchingFistError(f"cannot read OperatorConfigs: {error.reason}") from error
    names: set[str] = set()
    for item in listing.get("items") or []:
        approvals = (item.get("spec") or {}).get("approvals") or {}
        names |= {str(n) for n in approvals.get("approvers") or []}
    return names


def _approve_by_server(args: argparse.Namespace) -> int:
    import httpx

    token = (os.environ.get("PUNCHINGFIST_TOKEN") or "").strip()
    if args.token_file:
        try:
            token = Path(args.token_file).expanduser().read_text().strip()
        except OSError as error:
            raise PunchingFistError(f"--token-file: {error}") from error
    token = token or (os.environ.get("PUNCHINGFIST_APPROVER_TOKEN") or "").strip()
    if not token:
        raise PunchingFistError(
            "the server needs credentials: give --token-file PATH (the server's api-token file "
            "in embedded mode) or set $PUNCHINGFIST_TOKEN (a Kubernetes token in the cluster, "
            "e.g. `kubectl create token NAME`) or $PUNCHINGFIST_APPROVER_TOKEN"
        )
    approver = args.approver
    base = args.server.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
            gate = f"{args.step}-approval" if args.step else None
            if gate is None:
                found = http.get(f"/api/v1/runs/{args.run}")
                _check(found, args.run)
                waiting = [
                    a["gate"]
                    for a in found.json().get("approvals", [])
                    if a.get("decision") == "pending"
                ]
                gate = _gate(args.run, None, waiting)
            body = {"decision": "deny" if args.deny else "approve", "comment": args.comment}
            if approver:
                body["approver"] = approver
            answer = http.post(f"/api/v1/runs/{args.run}/approvals/{gate}", json=body)
            _check(answer, args.run)
    except httpx.HTTPError as error:
        raise PunchingFistError(f"cannot reach the server at {base}: {error}") from error
    record = answer.json()
    print(f"{record['decision']}: {args.run} / {gate} (as {record['approver']})")
    return EXIT_OK


def _check(response: Any, run: str) -> None:
    if response.status_code >= 400:
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text
        raise PunchingFistError(f"the server refused ({response.status_code}): {message}")


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
            files = [p for p in files if _is_resource_file(p)]
        elif path.exists():
            files = [path]
        else:
            raise PunchingFistError(f"{raw}: no such file or directory")
        for file in files:
            try:
                yield str(file), file.read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise PunchingFistError(f"{file}: cannot read: {error}") from error


def _is_resource_file(path: Path) -> bool:
    """Files in a directory are read only when they hold Kubernetes-style objects: alert
    payloads and recorded scenarios beside the resources are not. A file that does not parse is
    read, so that its error is reported."""
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True
    return any(isinstance(d, dict) and ("apiVersion" in d or "kind" in d) for d in documents)


if __name__ == "__main__":
    sys.exit(main())
