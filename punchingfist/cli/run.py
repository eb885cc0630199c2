"""`punchingfist run`: compile one Workflow and run it here, on the local engine."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig, Resource, Source, Workflow
from punchingfist.cli.exit_codes import EXIT_FAILED, EXIT_OK
from punchingfist.cli.inputs import read_resources
from punchingfist.cli.live import LiveObserver
from punchingfist.compiler import CompiledWorkflow, compile_resources
from punchingfist.engine import (
    ApprovalRequest,
    Approver,
    AutoApprover,
    PromptApprover,
    SilentObserver,
    run_workflow,
)
from punchingfist.errors import PunchingFistError
from punchingfist.executors.setup import choose_model, event_parameters, gather_secrets
from punchingfist.runs.report import investigation, render
from punchingfist.runtime.sinks.previews import gate_text, parse_preview
from punchingfist.secrets import SecretResolver


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="as the Workflow's spec.dryRun: investigate, but only preview fixes",
    )
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


def _run(args: argparse.Namespace) -> int:
    return run_command(args, list(read_resources(args.filename)))


def pick_workflow(resources: Sequence[Resource[Any]], name: str | None) -> Workflow:
    workflows = [r for r in resources if isinstance(r, Workflow)]
    if name is not None:
        for workflow in workflows:
            if workflow.name == name:
                return workflow
        known = ", ".join(sorted(w.name for w in workflows)) or "none"
        raise PunchingFistError(f"no Workflow {name!r} in the input (given: {known})")
    if len(workflows) == 1:
        return workflows[0]
    if not workflows:
        raise PunchingFistError("the input holds no Workflow to run")
    names = ", ".join(sorted(w.name for w in workflows))
    raise PunchingFistError(f"the input holds several Workflows ({names}); pick one: --workflow")


def compile_one(resources: Sequence[Resource[Any]], workflow: Workflow) -> CompiledWorkflow:
    chosen = [r for r in resources if not isinstance(r, Workflow) or r is workflow]
    configs: list[Resource[Any]] = [r for r in chosen if isinstance(r, OperatorConfig)]
    chosen = [r for r in chosen if not isinstance(r, OperatorConfig)] + configs[:1]
    (compiled,) = compile_resources(chosen)
    return compiled


def run_command(args: Any, resources: list[Resource[Any]]) -> int:
    workflow = pick_workflow(resources, args.workflow)
    if getattr(args, "dry_run", False):
        dry = Workflow(workflow.metadata, workflow.spec.model_copy(update={"dry_run": True}))
        resources = [dry if r is workflow else r for r in resources]
        workflow = dry
    compiled = compile_one(resources, workflow)
    for warning in compiled.warnings:
        print(f"warning: {workflow.ref}: {warning}", file=sys.stderr)
    source = next(
        (
            r
            for r in resources
            if isinstance(r, Source) and r.spec.trigger_workflow == workflow.name
        ),
        None,
    )
    origin = args.event
    try:
        data = json.loads(sys.stdin.read() if origin == "-" else Path(origin).read_text())
    except OSError as error:
        raise PunchingFistError(f"{origin}: cannot read: {error.strerror}") from error
    except ValueError as error:
        raise PunchingFistError(f"{origin}: not JSON: {error}") from error
    parameters = event_parameters(data, alert=args.alert, source=source, origin=origin)
    environ = dict(os.environ)
    choice = choose_model(
        compiled.manifest,
        json.loads(parameters["event"]),
        environ,
        replay=args.replay,
        endpoint=args.llm_endpoint,
        model=args.llm_model,
        replay_fallback=True,
    )
    if choice.replayed and not args.replay:
        print(
            f"⚠️  no model configured: {choice.label} is replayed, no model runs; "
            "give --llm-endpoint URL for a real investigation",
            file=sys.stderr,
        )
    secrets_dir = Path(args.secrets_dir) if args.secrets_dir else None
    config = next((r.spec for r in resources if isinstance(r, OperatorConfig)), None)
    resolver = SecretResolver.for_config(config, environ=environ)  # its secretManager
    secrets = gather_secrets(compiled.manifest, compiled.objects, environ, secrets_dir, resolver)
    # Absolute: each step process runs in its own directory, and a relative path would put its
    # result files below that one instead of where the engine reads them.
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="punchingfist-run-")).resolve()
    approver: Approver
    who = args.approver or os.environ.get("USER") or "local-user"
    if args.approve or args.deny:
        approver = AutoApprover(bool(args.approve), who, args.comment or "")
    else:
        approver = PromptApprover(sys.stdin, sys.stderr, explain=gate_preview)
    if not args.quiet:
        print(
            f"👊 running {workflow.name} locally | model: {choice.label} | files: {workdir}",
            file=sys.stderr,
        )
    result = run_workflow(
        compiled.manifest,
        parameters,
        workdir=workdir,
        approver=approver,
        observer=SilentObserver() if args.quiet else LiveObserver(sys.stderr),
        secrets=secrets,
        environ={**environ, **choice.environ},
    )
    report = investigation(result, model=choice.label, replayed=choice.replayed)
    if args.output == "json":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return EXIT_OK if result.phase == "Succeeded" else EXIT_FAILED


def gate_preview(request: ApprovalRequest) -> str | None:
    """What the terminal shows before asking about a remediation step's gate: its fix's
    preview (the action, the target, the server-side dry run's whole diff, RBAC's verdict), as
    `punchingfist approve --show`, Slack and the web page show it. None for any other gate."""
    shown = parse_preview(request.preview)
    if shown is None:
        return None
    return gate_text(request.run, request.display_name, shown)
