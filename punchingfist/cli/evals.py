"""`punchingfist eval`: measure investigations on scenario folders, compare two reports, and
export a finished run as a scenario (docs/evals.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from punchingfist.cli.exit_codes import EXIT_FAILED, EXIT_OK
from punchingfist.errors import PunchingFistError
from punchingfist.evals import report
from punchingfist.evals.export import add_export_arguments, export_command
from punchingfist.evals.judge import Judge
from punchingfist.evals.results import Report
from punchingfist.evals.running import Options, Progress, cases, run_scenarios
from punchingfist.evals.scenarios import load_all

ACTIONS = ("run", "compare", "export")
FORMATS = ("md", "json", "html")


class EvalError(PunchingFistError):
    """An eval's options or reports are unusable."""


def with_action(argv: Sequence[str]) -> list[str]:
    """`punchingfist eval SCENARIOS...` means `punchingfist eval run SCENARIOS...`."""
    given = list(argv)
    if len(given) > 1 and given[0] == "eval" and given[1] not in (*ACTIONS, "-h", "--help"):
        return ["eval", "run", *given[1:]]
    return given


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evals = commands.add_parser(
        "eval",
        help="measure investigation quality on scenario folders, with your model",
        description=(
            "Measure how well the agent investigates, with your model, on scenario folders "
            "(examples/evals; format in docs/evals.md): `punchingfist eval SCENARIOS... "
            "--llm-endpoint URL --llm-model M`. Also: `eval compare A.json B.json`, `eval "
            "export RUN`."
        ),
    )
    actions = evals.add_subparsers(title="actions", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run",
        help="run scenarios (the default action: `punchingfist eval SCENARIOS...`)",
        description=(
            "Run each scenario through the agent loop that runs in production, against any "
            "OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp's server, OpenAI, ...), score "
            "each answer (deterministic checks, then the optional LLM judge) and print the "
            "report: pass rate overall and by tag, tokens, cost, latency. Progress goes to "
            "stderr, the report to stdout (or --output)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="folders of scenarios")
    model = run.add_argument_group("the model under test")
    model.add_argument(
        "--llm-endpoint",
        default=os.environ.get("PF_LLM_ENDPOINT"),
        help="OpenAI-compatible base URL, e.g. http://localhost:11434/v1 (default: "
        "$PF_LLM_ENDPOINT)",
    )
    model.add_argument(
        "--llm-model", default=os.environ.get("PF_LLM_MODEL"), help="model name ($PF_LLM_MODEL)"
    )
    model.add_argument(
        "--llm-mode",
        choices=("tools", "json_schema"),
        help="how answers are structured: tools (OpenAI, vLLM) or json_schema (Ollama, "
        "llama.cpp); default: by endpoint",
    )
    model.add_argument(
        "--llm-api-key-env",
        default="LLM_API_KEY",
        metavar="NAME",
        help="the environment variable holding the API key (never a flag: flags are visible "
        "to every user of this machine)",
    )
    model.add_argument(
        "--price",
        metavar="IN,OUT",
        help="USD per million input and output tokens (default: the built-in list price of "
        "known hosted models; unknown models' cost is reported as unknown)",
    )
    judge = run.add_argument_group("the optional LLM judge (strict rubric, after the checks)")
    judge.add_argument("--judge-endpoint", help="OpenAI-compatible base URL of the judge")
    judge.add_argument("--judge-model", help="the judge's model; enables the judge")
    judge.add_argument("--judge-mode", choices=("tools", "json_schema"))
    judge.add_argument("--judge-api-key-env", default="JUDGE_API_KEY", metavar="NAME")
    how = run.add_argument_group("how")
    how.add_argument("--repeat", type=int, default=1, metavar="N", help="run each N times")
    how.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="scenarios in parallel (processes)"
    )
    how.add_argument("--tag", action="append", metavar="TAG", help="only scenarios with a tag")
    how.add_argument(
        "--live",
        action="store_true",
        help="run live scenarios on the cluster of --kubeconfig: they break real workloads in "
        "namespaces of their own, then delete them",
    )
    how.add_argument("--kubeconfig", metavar="PATH", help="the cluster for --live")
    how.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS", help="per scenario")
    out = run.add_argument_group("output")
    out.add_argument("-o", "--format", choices=FORMATS, default="md", help="report format")
    out.add_argument("--output", metavar="FILE", help="write the report here (else stdout)")
    out.add_argument("--logs", metavar="DIR", help="keep each case's transcript in DIR")
    out.add_argument(
        "--fail-under",
        type=float,
        metavar="RATE",
        help="exit 1 when the pass rate (0..1) is below RATE (for CI gates)",
    )
    run.set_defaults(handler=_run)
    compare = actions.add_parser(
        "compare",
        help="two JSON reports side by side",
        description="Two reports of `eval -o json` side by side: pass rate, calibration, "
        "tokens, cost and latency, by tag, and the scenarios whose outcome differs.",
    )
    compare.add_argument("first", metavar="A.json")
    compare.add_argument("second", metavar="B.json")
    compare.add_argument("-o", "--format", choices=FORMATS, default="md")
    compare.add_argument("--output", metavar="FILE")
    compare.set_defaults(handler=_compare)
    export = actions.add_parser(
        "export",
        help="a finished run as a scenario folder (your own regression suite)",
        description="Turn a finished run (its recorded tool outputs, and the root cause a "
        "human confirmed, when there is one) into a scenario folder.",
    )
    add_export_arguments(export)
    export.set_defaults(handler=export_command)


def _price(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        given, taken = (float(part) for part in text.split(","))
    except ValueError as error:
        raise EvalError(f"--price {text!r}: give IN,OUT in USD per million tokens") from error
    return given, taken


def _options(args: argparse.Namespace) -> Options:
    if not args.llm_endpoint or not args.llm_model:
        raise EvalError(
            "give the model under test: --llm-endpoint URL (e.g. http://localhost:11434/v1 for "
            "Ollama) and --llm-model NAME"
        )
    if args.live and not args.kubeconfig and not os.environ.get("KUBECONFIG"):
        raise EvalError("--live needs a cluster: --kubeconfig PATH (or $KUBECONFIG)")
    if args.repeat < 1 or args.jobs < 1:
        raise EvalError("--repeat and --jobs are at least 1")
    judge = None
    if args.judge_model:
        judge = Judge(
            endpoint=args.judge_endpoint or args.llm_endpoint,
            model=args.judge_model,
            api_key=os.environ.get(args.judge_api_key_env) or os.environ.get(args.llm_api_key_env),
            mode=args.judge_mode,
        )
    return Options(
        endpoint=args.llm_endpoint,
        model=args.llm_model,
        api_key=os.environ.get(args.llm_api_key_env),
        mode=args.llm_mode,
        judge=judge,
        repeat=args.repeat,
        jobs=args.jobs,
        live=args.live,
        kubeconfig=args.kubeconfig or os.environ.get("KUBECONFIG"),
        price=_price(args.price),
        logs=args.logs,
        timeout=args.timeout,
    )


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        print(f"report written to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _run(args: argparse.Namespace) -> int:
    options = _options(args)
    scenarios = load_all(args.scenarios)
    if args.tag:
        scenarios = [s for s in scenarios if set(args.tag) & set(s.tags)]
        if not scenarios:
            raise EvalError(f"no scenario has the tag(s) {', '.join(args.tag)}")
    total = len(cases(scenarios, options.repeat))
    print(
        f"evaluating {options.model} at {options.endpoint}: {len(scenarios)} scenarios"
        + (f" x {options.repeat}" if options.repeat > 1 else "")
        + f", {min(options.jobs, total)} at a time",
        file=sys.stderr,
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    results = run_scenarios(scenarios, options, Progress(total))
    judged = options.judge
    made = Report(
        model=options.described(),
        judge={"name": judged.model, "endpoint": judged.endpoint} if judged else None,
        started=started,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        options={"repeat": options.repeat, "jobs": options.jobs, "live": options.live},
        results=results,
    ).as_dict()
    _write(report.render(made, args.format), args.output)
    summary = made["summary"]
    rate = summary["pass_rate"]
    print(
        f"passed {summary['passed']} of {summary['passed'] + summary['failed']}"
        + (f", skipped {summary['skipped']}" if summary["skipped"] else ""),
        file=sys.stderr,
    )
    if args.fail_under is not None and (rate is None or rate < args.fail_under):
        print(f"pass rate {rate} is under --fail-under {args.fail_under}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _report(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise EvalError(f"{path}: cannot read it: {error.strerror}") from error
    except ValueError as error:
        raise EvalError(f"{path}: not JSON ({error}): write reports with -o json") from error
    if not isinstance(data, dict) or "results" not in data:
        raise EvalError(f"{path}: not an eval report (no `results`): write it with -o json")
    return data


def _compare(args: argparse.Namespace) -> int:
    _write(report.compare(_report(args.first), _report(args.second), args.format), args.output)
    return EXIT_OK
