"""`punchingfist run`: compile one Workflow and run it here, on the local engine."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig, Resource, Source, Workflow
from punchingfist.compiler import CompiledWorkflow, compile_resources
from punchingfist.embedded.live import LiveObserver
from punchingfist.embedded.report import investigation, render
from punchingfist.embedded.setup import choose_model, event_parameters, gather_secrets
from punchingfist.engine import Approver, AutoApprover, PromptApprover, SilentObserver, run_workflow
from punchingfist.errors import PunchingFistError

EXIT_OK, EXIT_FAILED = 0, 1


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
    secrets = gather_secrets(compiled.manifest, compiled.objects, environ, secrets_dir)
    # Absolute: each step process runs in its own directory, and a relative path would put its
    # result files below that one instead of where the engine reads them.
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="punchingfist-run-")).resolve()
    approver: Approver
    who = args.approver or os.environ.get("USER") or "local-user"
    if args.approve or args.deny:
        approver = AutoApprover(bool(args.approve), who, args.comment or "")
    else:
        approver = PromptApprover(sys.stdin, sys.stderr)
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
