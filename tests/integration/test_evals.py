"""The eval suite (examples/evals) through the real agent loop, openai + instructor, against a
scripted model on real HTTP: the harness passes a model that answers correctly, and fails one
that answers wrongly or acts unsafely, on every scenario, with the right reasons. Live
scenarios without recordings are skipped here (tests/cluster/test_evals_live.py runs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from punchingfist.cli import main
from punchingfist.evals.judge import Judge
from punchingfist.evals.running import Options, run_scenarios
from punchingfist.evals.scenarios import Scenario, load_all
from punchingfist.evals.tools import answer
from tests.fakes.eval_model import ScriptedEvalModel

SUITE = Path(__file__).parents[2] / "examples" / "evals"
SCENARIOS = load_all([str(SUITE)])
OFFLINE = [s for s in SCENARIOS if s.offline]


def test_the_suite_is_big_enough_and_covers_controls_and_red_herrings() -> None:
    assert len(SCENARIOS) >= 30
    assert sum(s.live is not None for s in SCENARIOS) >= 10
    assert sum(s.expect.no_fault for s in SCENARIOS) >= 2
    assert sum(bool(s.expect.must_not.blame) for s in SCENARIOS) >= 2


@pytest.mark.parametrize("scenario", OFFLINE, ids=lambda s: s.name)
def test_every_reference_call_has_a_recording(scenario: Scenario) -> None:
    for turn in scenario.reference:
        for call in turn["action"].get("calls") or []:
            assert answer(scenario.recordings, call) is not None, call


def run(behaviour: str, tmp_path: Path, **options: object) -> dict[str, object]:
    with ScriptedEvalModel(OFFLINE, behaviour) as model:  # type: ignore[arg-type]
        given = Options(endpoint=model.url, model=f"scripted-{behaviour}", jobs=2)
        for key, value in options.items():
            setattr(given, key, value)
        results = run_scenarios(OFFLINE, given)
    return {r.scenario: r for r in results}


def test_the_correct_model_passes_every_scenario(tmp_path: Path) -> None:
    results = run("correct", tmp_path, logs=str(tmp_path / "logs"))
    failed = {name: r.reasons for name, r in results.items() if r.status != "passed"}
    assert failed == {}
    for result in results.values():
        assert result.turns >= 2 and result.tool_calls and result.tokens["total"] > 0
        assert result.log and "🤖 turn 1/" in Path(result.log).read_text()


def test_the_wrong_model_fails_every_scenario_as_confidently_wrong(tmp_path: Path) -> None:
    for name, result in run("wrong", tmp_path).items():
        assert result.status == "failed", name
        scenario = next(s for s in OFFLINE if s.name == name)
        expected = "proposes a fix" if scenario.expect.no_fault else "missing: "
        assert any(r.startswith(expected) for r in result.reasons), (name, result.reasons)
        assert result.overconfident, name
        assert result.reasons[-1].startswith("confidently wrong: confidence 0.95"), name


def test_the_unsafe_model_fails_every_scenario_for_what_it_asked(tmp_path: Path) -> None:
    for name, result in run("unsafe", tmp_path).items():
        assert result.status == "failed", name
        asked = [r for r in result.reasons if r.startswith("asked to")]
        assert [r.split(":")[0] for r in asked] == [
            "asked to change the cluster in a read-only step",
            "asked to read Secrets",
        ], (name, result.reasons)
        assert result.tool_calls[0]["status"] == "refused", "the delete was refused, not run"


def test_the_judge_decides_after_the_checks_pass(tmp_path: Path) -> None:
    few = OFFLINE[:3]
    with ScriptedEvalModel(few, "correct") as model:
        judge = Judge(endpoint=model.url, model="scripted-judge")
        results = run_scenarios(few, Options(endpoint=model.url, model="m", judge=judge))
        assert model.judged == len(few)
    for result in results:
        assert result.status == "passed" and result.judge and result.judge["passed"]
    with ScriptedEvalModel(few, "unsafe") as model:
        judge = Judge(endpoint=model.url, model="scripted-judge")
        results = run_scenarios(few, Options(endpoint=model.url, model="m", judge=judge))
        assert model.judged == 0, "a case that failed its checks costs no judge call"


def test_the_command_reports_and_compares_and_gates_on_the_pass_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports, urls = {}, {}
    for behaviour in ("correct", "wrong"):
        with ScriptedEvalModel(OFFLINE, behaviour) as model:  # type: ignore[arg-type]
            reports[behaviour] = tmp_path / f"{behaviour}.json"
            urls[behaviour] = model.url
            args = ["--llm-endpoint", model.url, "--llm-model", behaviour, "-o", "json"]
            args += ["--output", str(reports[behaviour]), "--fail-under", "0.9"]
            code = main(["eval", str(SUITE), *args])
        assert code == (0 if behaviour == "correct" else 1)
    err = capsys.readouterr().err
    assert f"evaluating correct at {urls['correct']}: {len(SCENARIOS)} scenarios" in err
    assert f"/{len(SCENARIOS)} ✅ " in err and "❌" in err and "pass rate 0.0 is under" in err
    correct = json.loads(reports["correct"].read_text())
    assert correct["summary"]["pass_rate"] == 1.0
    assert correct["summary"]["passed"] == len(OFFLINE)
    assert correct["summary"]["skipped"] == len(SCENARIOS) - len(OFFLINE)
    assert correct["model"] == {"name": "correct", "endpoint": urls["correct"], "mode": None}
    assert main(["eval", "compare", str(reports["correct"]), str(reports["wrong"])]) == 0
    compared = capsys.readouterr().out
    assert "correct" in compared and "wrong" in compared and "missing: " in compared
    html = tmp_path / "r.html"
    assert (
        main(["eval", "compare", *map(str, reports.values()), "-o", "html", "--output", str(html)])
        == 0
    )
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_bad_options_and_reports_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(SUITE)]) == 1
    assert "give the model under test: --llm-endpoint URL" in capsys.readouterr().err
    args = ["eval", str(SUITE), "--llm-endpoint", "http://127.0.0.1:9/v1", "--llm-model", "m"]
    assert main([*args, "--price", "cheap"]) == 1
    assert "--price 'cheap': give IN,OUT" in capsys.readouterr().err
    assert main([*args, "--tag", "no-such-tag"]) == 1
    assert "no scenario has the tag(s) no-such-tag" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    assert main(["eval", "compare", str(bad), str(bad)]) == 1
    assert "not an eval report (no `results`)" in capsys.readouterr().err


def test_an_unreachable_model_fails_each_case_with_the_reason(tmp_path: Path) -> None:
    one = [s for s in OFFLINE if s.name == "crashloop-missing-configmap"]
    options = Options(endpoint="http://127.0.0.1:9/v1", model="m", timeout=20)
    [result] = run_scenarios(one, options)
    assert result.status == "failed"
    assert result.reasons[0].startswith("no answer: ")
    assert "Connection error" in result.reasons[0]
