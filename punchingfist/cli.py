"""The `punchingfist` command: compile Workflows to Argo, print CRDs."""

from __future__ import annotations

import argparse
import json
import os
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
        help="run the server on resources from YAML files (embedded mode)",
        description=(
            "Serve the Alertmanager webhook of every webhook Source, the read API (/api/v1/...), "
            "/metrics, /healthz and /readyz, on resources loaded from YAML files; no Kubernetes "
            "needed. Alerts are stored and correlated; runs wait in the outbox for an executor."
        ),
    )
    serve.add_argument(
        "-f", "--filename", action="append", required=True, metavar="PATH",
        help="YAML file or directory of Sources, Workflows, Sinks (repeatable)",
    )  # fmt: skip
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--database-url", help="default: $PUNCHINGFIST_DATABASE_URL or SQLite")
    serve.add_argument("--secrets-dir", metavar="DIR",
                       help="Secrets as files DIR/NAME/KEY (webhook credentials)")  # fmt: skip
    serve.add_argument("--namespace", default="default", help="namespace runs are created in")
    serve.add_argument(
        "--executor", choices=("none", "argo", "local"), default="none",
        help="start queued runs on Argo (kubeconfig or in-cluster), or here on the local engine "
        "(embedded mode); `none` keeps them queued",
    )  # fmt: skip
    serve.add_argument(
        "--workdir",
        metavar="DIR",
        help="--executor local: where run files go (default: ./punchingfist-runs)",
    )
    serve.add_argument(
        "--replay",
        metavar="SCENARIO_DIR",
        help="--executor local: replay this scenario's recorded model turns",
    )
    serve.add_argument(
        "--llm-endpoint",
        metavar="URL",
        help="--executor local: an OpenAI-compatible API for every agent step",
    )
    serve.add_argument("--llm-model", metavar="NAME", help="the model at --llm-endpoint")
    serve.add_argument("--kubeconfig", help="kubeconfig for --executor argo")
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
        help="replay the recorded model turns of a scenario folder",
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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from punchingfist.server import ServerState, create_app
    from punchingfist.server.state import SecretStore
    from punchingfist.store import database_url, upgrade

    resources = list(_read(args.filename))
    url = database_url(args.database_url)
    revision = upgrade(url)
    executor: Any = None
    if args.executor == "argo":
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
    if args.executor == "local":
        state.executor = local_executor(resources, state, args)
    paths = ", ".join(sorted(state.webhook_paths()))
    counts = f"{len(state.sources)} Sources, {len(state.workflows)} Workflows"
    print(f"punchingfist {__version__}: {counts}; database at revision {revision}; "
          f"webhooks: {paths}", file=sys.stderr)  # fmt: skip
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="info",
                access_log=True)  # fmt: skip
    return EXIT_OK


def local_executor(resources: list[Resource[Any]], state: Any, args: argparse.Namespace) -> Any:
    """The local engine as the server's executor: every Workflow compiled once, up front."""
    from punchingfist.executors.local import LocalExecutor

    compiled = {c.workflow.name: c for c in compile_resources(resources)}
    return LocalExecutor(
        compiled, state.sessions, Path(args.workdir or "punchingfist-runs").resolve(),
        environ=dict(os.environ), secrets_dir=Path(args.secrets_dir) if args.secrets_dir else None,
        replay=args.replay, endpoint=args.llm_endpoint, model=args.llm_model,
        metrics=state.metrics,
    )  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    from punchingfist.embedded.commands import run_command

    return run_command(args, list(_read(args.filename)))


def _demo(args: argparse.Namespace) -> int:
    from punchingfist.embedded.demo import run_demo

    return run_demo(args)


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
