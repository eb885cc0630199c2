"""`punchingfist run` asks a remediation step's gate at the terminal with the fix's preview
(#25): the action, the target, the server-side dry run's diff and RBAC's verdict, as
`punchingfist approve --show` prints them, before the question. A fix that is not offered is
never asked about.

The Workflow is compiled by the real compiler and run by the real local engine; only its
`fix-preview` task, which needs an API server, is replaced by a process that answers what the
real preview task answered on the e2e API server (tests/fixtures/previews: recorded by running
`pf-runtime remediation-preview`'s `preview()` as the chart's remediator account)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from punchingfist.cli.run import gate_preview
from punchingfist.compiler import compile_workflow
from punchingfist.engine import PromptApprover, RunResult, run_workflow
from punchingfist.runtime.sinks.previews import parse_preview, preview_text
from tests.builders import make_workflow

RECORDED = Path(__file__).resolve().parents[1] / "fixtures/previews/set-resources-web.json"
ANSWER = (
    "import json, sys, pathlib; r = json.loads(sys.argv[1]); "
    "pathlib.Path('result.json').write_text(json.dumps(r)); "
    "pathlib.Path('preview.json').write_text(json.dumps(r['result']['preview'])); "
    "pathlib.Path('offered').write_text('true' if r['result']['offered'] else 'false')"
)
"""The preview task's three outputs (result, preview, offered), as pf-runtime writes them."""


def recorded(which: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(RECORDED.read_text())[which]
    return answer


def run_gated(which: str, tmp_path: Path, answer: str) -> tuple[RunResult, str]:
    """Run a one-fix Workflow whose preview answers the recorded `which`, with `answer` typed
    at the prompt; the run and what the terminal showed."""
    action = recorded(which)["result"]["preview"]["action"]
    workflow = make_workflow(
        [{"name": "fix", "type": "remediation", "remediation": {"action": action}}]
    )
    manifest = compile_workflow(workflow, {}, None).manifest
    (preview,) = [t for t in manifest["spec"]["templates"] if t["name"] == "fix-preview"]
    preview["container"]["command"] = [sys.executable, "-c", ANSWER, json.dumps(recorded(which))]
    preview["container"].pop("args", None)
    screen = io.StringIO()
    prompt = PromptApprover(io.StringIO(answer), screen, approver="dave", explain=gate_preview)
    result = run_workflow(
        manifest, workdir=tmp_path, approver=prompt, name="fix-web", poll_interval=0.02
    )
    return result, screen.getvalue()


def test_the_prompt_shows_the_diff_and_rbac_before_asking(tmp_path: Path) -> None:
    result, shown = run_gated("offered", tmp_path, "n not now\n")
    question = shown.index("approve step 'fix' of run fix-web?")
    before = shown[:question]
    assert "fix-web / fix-approval: the fix to approve" in before
    assert (
        "Fix:              set container web of deployment shop/web to limits memory=1Gi" in before
    )
    assert "Target:           deployment shop/web" in before
    assert "Dry run:          accepted" in before
    assert (
        "RBAC:             allowed for system:serviceaccount:pf:punchingfist-remediator" in before
    )
    assert "-            memory: 512Mi\n+            memory: 1Gi\n" in before
    recorded_preview = parse_preview(recorded("offered"))
    assert recorded_preview is not None
    assert preview_text(recorded_preview, lines=None) in before, "the shared renderer's text"
    gate = result.node("fix-approval")
    assert gate.outputs["approved"] == "false" and gate.outputs["comment"] == "not now"
    assert result.node("fix").phase == "Skipped", "denied: nothing applied"


def test_a_fix_that_is_not_offered_is_never_asked(tmp_path: Path) -> None:
    result, shown = run_gated("not-offered", tmp_path, "y\n")
    assert shown == "", "no question, no preview"
    assert result.node("fix-approval").phase in ("Skipped", "Omitted")
    assert result.node("fix").phase in ("Skipped", "Omitted")


@pytest.mark.parametrize("preview", [None, {}, {"offered": True}])
def test_a_gate_without_a_preview_is_asked_plainly(preview: Any) -> None:
    from datetime import UTC, datetime

    from punchingfist.engine import ApprovalRequest

    request = ApprovalRequest(
        "run", "uid", "run.gate", "gate", "fix", datetime.now(UTC), None, preview
    )
    assert gate_preview(request) is None
