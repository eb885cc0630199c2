"""`pf-runtime`: the program every task container of a compiled workflow runs.

Its log is what people read in the Argo UI, so it says what it is about to do, in words.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import ValidationError

from punchingfist import __version__
from punchingfist.api.runspec import (
    CONDITION_FILE,
    OFFERED_FILE,
    OUTPUTS_FILE,
    PREVIEW_FILE,
    RESULT_FILE,
    ROLLBACK_FILE,
    SPEC_ENV,
    SPEC_VERSION,
    StepResult,
    TaskKind,
    TaskSpec,
)
from punchingfist.errors import NotSupportedYet, PunchingFistError, TemplateError
from punchingfist.runtime import commands
from punchingfist.runtime.context import build_context
from punchingfist.templating import compile_template

if TYPE_CHECKING:
    from punchingfist.runtime.sinks import Delivery

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_SUPPORTED = 0, 1, 2, 3
WOULD_SEND_FILE = "would-send.json"
"""Beside a sink's result: the request a sink that is not configured would have sent."""
KINDS: tuple[str, ...] = get_args(TaskKind)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pf-runtime",
        description="Run one task of a compiled Punching Fist workflow. The task is described "
        f"by the {SPEC_ENV} environment variable the compiler sets.",
    )
    parser.add_argument("--version", action="version", version=f"pf-runtime {__version__}")
    parser.add_argument("kind", choices=KINDS, help="what the task is (set by the compiler)")
    parser.add_argument(
        "--result-dir",
        default=None,
        help="where to write result files (default: the paths the compiler declared)",
    )
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    files = _Files(args.result_dir)
    try:
        spec = _load_spec(env, args.kind)
        _banner(spec, env)
        runner: Runner = _RUNNERS[spec.kind]
        return runner(spec, env, files)
    except NotSupportedYet as error:
        print(f"pf-runtime: {error}", file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    except (TemplateError, PunchingFistError) as error:
        print(f"pf-runtime: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


class _Files:
    def __init__(self, directory: str | None) -> None:
        self.directory = Path(directory) if directory else None

    def path(self, declared: str) -> Path:
        path = self.directory / Path(declared).name if self.directory else Path(declared)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, declared: str, value: Any) -> None:
        self.path(declared).write_text(json.dumps(value, ensure_ascii=False, default=str))

    def write_text(self, declared: str, value: str) -> None:
        self.path(declared).write_text(value)


def _load_spec(environ: Mapping[str, str], kind: str) -> TaskSpec:
    raw = environ.get(SPEC_ENV)
    if not raw:
        raise PunchingFistError(
            f"{SPEC_ENV} is not set: pf-runtime runs inside tasks of a compiled workflow "
            "(see `punchingfist compile`)"
        )
    try:
        spec = TaskSpec.decode(raw)
    except (ValueError, ValidationError) as error:
        raise PunchingFistError(f"{SPEC_ENV} is not a valid task spec: {error}") from error
    if spec.version != SPEC_VERSION:
        raise PunchingFistError(
            f"task spec version {spec.version} needs another pf-runtime (this one reads "
            f"{SPEC_VERSION}); use the runtime image that matches the compiler"
        )
    if spec.kind != kind:
        raise PunchingFistError(
            f"asked to run a {kind!r} task, but {SPEC_ENV} holds a {spec.kind!r}"
        )
    return spec


def _banner(spec: TaskSpec, environ: Mapping[str, str]) -> None:
    where = f"step {spec.step!r}" if spec.step else spec.kind
    run = environ.get("PF_RUN_NAME", "-")
    print(f"👊 punchingfist {__version__} | workflow {spec.workflow} | run {run} | {where}")
    sys.stdout.flush()


def _condition(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    assert spec.condition is not None
    context = build_context(spec, environ)
    value = compile_template(spec.condition, field="condition").is_true(context)
    files.write_text(CONDITION_FILE, "true" if value else "false")
    verdict = "holds: the step runs" if value else "does not hold: the step is skipped"
    print(f"condition {spec.condition.strip()} {verdict}")
    return EXIT_OK


def _outputs(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    context = build_context(spec, environ)
    values: dict[str, Any] = {}
    problems = 0
    for output in spec.outputs:
        try:
            values[output.name] = compile_template(output.value).evaluate(context)
        except TemplateError as error:
            problems += 1
            values[output.name] = None
            print(f"output {output.name}: {error.message}", file=sys.stderr)
            continue
        print(f"output {output.name} = {json.dumps(values[output.name], default=str)[:200]}")
    files.write_json(OUTPUTS_FILE, values)
    return EXIT_FAILED if problems else EXIT_OK


def _cli(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    assert spec.cli is not None and spec.step is not None
    context = build_context(spec, environ)
    try:
        script = commands.prepare(spec.cli.command, context)
    except TemplateError as bad:
        files.write_json(RESULT_FILE, _failed(spec.step, "cli", f"template: {bad.message}"))
        raise
    print(f"$ {script.text.strip()}")
    sys.stdout.flush()
    completed = commands.run(script, timeout=spec.timeout_seconds, environ=environ)
    success = completed.exit_code == 0 and not completed.timed_out
    problem = None
    if completed.timed_out:
        problem = f"timed out after {spec.timeout_seconds} s"
    elif not success:
        problem = f"exited with code {completed.exit_code}"
    result = StepResult(
        step=str(spec.step),
        kind="cli",
        success=success,
        phase="Succeeded" if success else "Failed",
        exit_code=completed.exit_code,
        seconds=completed.seconds,
        stdout=completed.stdout,
        stderr=completed.stderr,
        result=_parsed(completed.stdout),
        error=problem,
    )
    files.write_json(RESULT_FILE, result.model_dump(mode="json"))
    print(f"step {spec.step} {'succeeded' if success else 'failed: ' + str(problem)}")
    return EXIT_OK if success else EXIT_FAILED


def _agent(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    assert spec.agent is not None and spec.step is not None
    from punchingfist.runtime.agent.runner import run_agent_step

    result = StepResult.model_validate(run_agent_step(spec, environ))
    files.write_json(RESULT_FILE, result.model_dump(mode="json"))
    return EXIT_OK if result.success else EXIT_FAILED


def _sink(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    assert spec.sink is not None
    from punchingfist.runtime.sinks import deliver

    return _delivered(spec.sink.name, spec.sink.type, lambda: deliver(spec, environ), files)


def _approval_request(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    from punchingfist.runtime.sinks import request_approval

    name = f"{spec.step}-approval-request"
    return _delivered(name, "approval-request", lambda: request_approval(spec, environ), files)


def _delivered(name: str, kind: str, deliver: Callable[[], Delivery], files: _Files) -> int:
    """Write and print the delivery record; bad input (template, secret) is recorded, then
    raised so that it exits 2 with its message."""
    from punchingfist.runtime.sinks import Delivery

    try:
        record = deliver()
    except PunchingFistError as error:
        files.write_json(RESULT_FILE, Delivery(name, kind, "failed", error=str(error)).as_result())
        raise
    if record.preview is not None:
        declared = str(Path(RESULT_FILE).with_name(WOULD_SEND_FILE))
        files.write_json(declared, record.preview)
        record.extra["would_send"] = str(files.path(declared))
        record.detail += f" | what it would have sent: {files.path(declared)}"
    files.write_json(RESULT_FILE, record.as_result())
    print(record.line())
    return EXIT_FAILED if record.outcome == "failed" else EXIT_OK


def _remediation_preview(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    from punchingfist.runtime.remediation import preview
    from punchingfist.runtime.remediation.kube import Kube

    result = preview(spec, environ, Kube(environ))
    files.write_json(RESULT_FILE, result)
    files.write_json(PREVIEW_FILE, result["result"].get("preview") or {})
    files.write_text(OFFERED_FILE, "true" if result["result"].get("offered") else "false")
    return EXIT_OK


def _remediation(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    from punchingfist.runtime.remediation import apply
    from punchingfist.runtime.remediation.kube import Kube

    result = apply(spec, environ, Kube(environ))
    files.write_json(RESULT_FILE, result)
    pending = bool(result["result"].get("rollback_pending"))
    files.write_text(ROLLBACK_FILE, "true" if pending else "false")
    # A fix waiting for its rollback approval has not failed yet: the rollback task decides.
    return EXIT_OK if result["success"] or pending else EXIT_FAILED


def _remediation_rollback(spec: TaskSpec, environ: Mapping[str, str], files: _Files) -> int:
    from punchingfist.runtime.remediation import rollback
    from punchingfist.runtime.remediation.kube import Kube

    result = rollback(spec, environ, Kube(environ))
    files.write_json(RESULT_FILE, result)
    return EXIT_FAILED


def _failed(step: str, kind: str, error: str) -> dict[str, Any]:
    failed = StepResult(step=step, kind=kind, success=False, phase="Failed", error=error)
    return failed.model_dump(mode="json")


def _parsed(stdout: str) -> Any:
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        return text


Runner = Callable[[TaskSpec, Mapping[str, str], "_Files"], int]

_RUNNERS: dict[str, Runner] = {
    "condition": _condition,
    "outputs": _outputs,
    "cli": _cli,
    "agent": _agent,
    "approval-request": _approval_request,
    "sink": _sink,
    "remediation-preview": _remediation_preview,
    "remediation": _remediation,
    "remediation-rollback": _remediation_rollback,
}


if __name__ == "__main__":
    sys.exit(main())
