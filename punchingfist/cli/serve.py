"""`punchingfist serve`: the server, on resources from YAML files or beside the controller in
a cluster."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from punchingfist import __version__
from punchingfist.cli.assembly import (
    ApiAuth,
    Assembly,
    InCluster,
    LocalRuns,
    ServerOptions,
    assemble,
)
from punchingfist.cli.controller import controller_arguments, controller_options
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.cli.inputs import read_resources
from punchingfist.errors import PunchingFistError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the server: on resources from YAML files, or with the controller in a cluster",
        description=(
            "Serve the Alertmanager webhook of every webhook Source, the read API (/api/v1/...), "
            "the web page (/ui/: incidents and their alerts, runs with the agent's report and "
            "sink deliveries, pending approvals with Approve / Deny; sign in with the API's "
            "token), /metrics, /healthz and /readyz. With -f, on resources loaded from YAML "
            "files (no Kubernetes needed; runs wait in the outbox unless --executor argo). With "
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
    controller_arguments(serve)
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from sqlalchemy import make_url

    from punchingfist.runs.batching import MAX_WRITERS, writers_fit
    from punchingfist.runs.metrics import use_multiprocess
    from punchingfist.store import database_url

    if args.in_cluster == bool(args.filename):
        raise PunchingFistError("give either -f FILE (resources from files) or --in-cluster")
    resources = list(read_resources(args.filename)) if args.filename else []
    url = database_url(args.database_url)
    backend = make_url(url).get_backend_name()
    if not writers_fit(args.intake_writers, backend):
        raise PunchingFistError(
            f"--intake-writers {args.intake_writers}: give 1, or up to "
            f"{MAX_WRITERS} with a PostgreSQL --database-url"
        )
    _check_workers(args, backend)
    options = _options(args, resources, url)
    metrics_dir = None
    if args.workers > 1:  # before the first metric is made
        metrics_dir = tempfile.mkdtemp(prefix="punchingfist-metrics-")
        use_multiprocess(metrics_dir)
    try:
        assembly = assemble(options)
        _announce(args, assembly)
        if metrics_dir is not None:
            return _serve_workers(args, assembly.app, assembly.state)
        assembly.run(args.host, args.port)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return EXIT_OK


def _options(args: argparse.Namespace, resources: list[Any], url: str) -> ServerOptions:
    """The server `args` ask for; a contradiction between flags is said before anything starts."""
    if args.executor == "local" and args.in_cluster:
        raise PunchingFistError(
            "--executor local runs resources from files: use -f, not --in-cluster"
        )
    if args.replay and args.executor != "local":
        raise PunchingFistError(
            "--replay answers agent steps on the local engine: add --executor local"
        )
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else None
    executor: Any = args.executor or ("argo" if args.in_cluster else "none")
    if executor == "local":
        executor = LocalRuns(
            Path(args.workdir or "punchingfist-runs").resolve(),
            environ=dict(os.environ),
            secrets_dir=secrets_dir,
            replay=args.replay,
            endpoint=args.llm_endpoint,
            model=args.llm_model,
        )
    controller = None
    if args.in_cluster:
        controller = InCluster(
            controller_options(args, [args.namespace]), step_start_timeout=args.step_start_timeout
        )
    return ServerOptions(
        resources,
        url,
        auth=_auth(args),
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        secrets_dir=secrets_dir,
        executor=executor,
        controller=controller,
        intake_writers=args.intake_writers,
    )


def _auth(args: argparse.Namespace) -> ApiAuth:
    if args.insecure_open_api:
        if args.auth or args.api_token_file:
            raise PunchingFistError(
                "--insecure-open-api turns authentication off: drop --auth and --api-token-file, "
                "or drop --insecure-open-api"
            )
        return ApiAuth("open")
    mode = args.auth or ("kubernetes" if args.in_cluster else "token")
    if mode == "kubernetes":
        if args.api_token_file:
            raise PunchingFistError("--api-token-file is for --auth token")
        return ApiAuth("kubernetes")
    return ApiAuth("token", token_file=args.api_token_file)


def _announce(args: argparse.Namespace, assembly: Assembly) -> None:
    state = assembly.state
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
    mode = f"controller on namespace {args.namespace}; " if assembly.operator else ""
    print(
        f"punchingfist {__version__}: {mode}{counts}; database at revision {assembly.revision}; "
        f"webhooks: {paths}; web page: http://{args.host}:{args.port}/ui/",
        file=sys.stderr,
    )


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
