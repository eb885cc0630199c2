"""The `punchingfist` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from punchingfist.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CONFIG = EXAMPLES / "operatorconfigs/punchingfist-config.yaml"
ALL = [
    "-f",
    str(EXAMPLES / "workflows"),
    "-f",
    str(EXAMPLES / "sinks"),
    "-f",
    str(EXAMPLES / "sources"),
    "-f",
    str(CONFIG),
]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "punchingfist.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_compile_examples_prints_one_workflowtemplate_per_workflow() -> None:
    result = run("compile", *ALL)
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    templates = [d for d in documents if d["kind"] == "WorkflowTemplate"]
    names = {p.stem for p in (EXAMPLES / "workflows").glob("*.yaml")}
    assert {t["metadata"]["name"] for t in templates} == names
    assert "warning:" in result.stderr and "clear text" in result.stderr
    assert "Traceback" not in result.stderr


def test_compile_json_is_a_kubernetes_list() -> None:
    result = run("compile", *ALL, "-o", "json", "--workflow", "investigate-alert", "-n", "ops")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["kind"] == "List"
    (template,) = listing["items"]
    assert template["metadata"] == template["metadata"] | {"namespace": "ops"}


def test_compile_reads_stdin() -> None:
    text = (EXAMPLES / "workflows" / "investigate-alert.yaml").read_text()
    result = run("compile", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["metadata"]["name"] == "investigate-alert"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: [", "YAML syntax error"),
        (
            "apiVersion: punchingfist.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"
            "spec: {steps: [{name: a, type: agent, goal: g, maxIteratons: 2}]}\n",
            "spec.steps[0].maxIteratons: unknown field",
        ),
        (
            "apiVersion: punchingfist.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"
            "spec: {steps: [{name: a, type: agent, goal: '{{ .steps.b.result }}'}]}\n",
            "Workflow/w: spec.steps[0].goal: step 'a': there is no step 'b'",
        ),
        (
            "apiVersion: punchingfist.io/v1alpha1\nkind: Workflow\nmetadata: {name: w}\n"
            "spec: {steps: [{name: a, type: cli, command: 'x'}], sinks: [slack]}\n",
            "unknown Sink 'slack'",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "expected one of Source"),
    ],
)
def test_bad_input_exits_1_with_a_clear_message_and_no_traceback(text: str, expected: str) -> None:
    result = run("compile", "-f", "-", stdin=text)
    assert result.returncode == 1
    assert result.stdout == ""
    assert expected in result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def test_several_operator_configs_need_a_choice() -> None:
    resources = [
        arg
        for kind in ("workflows", "sinks", "sources", "operatorconfigs")
        for arg in ("-f", str(EXAMPLES / kind))
    ]
    result = run("compile", *resources)
    assert result.returncode == 1 and "--operator-config" in result.stderr
    result = run("compile", *resources, "--operator-config", "punchingfist-config")
    assert result.returncode == 0, result.stderr


def test_missing_file_and_no_workflow() -> None:
    assert main(["compile", "-f", "/nonexistent.yaml"]) == 1
    assert main(["compile", "-f", str(EXAMPLES / "sinks")]) == 1


def test_crds_command_writes_the_committed_files(tmp_path: Path) -> None:
    """The same files at the top level (`kubectl apply -f crds/`) and in the chart (`make crds`
    writes both)."""
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    written = sorted(tmp_path.iterdir())
    assert len(written) == 4
    for path in written:
        assert path.read_text() == (ROOT / "crds" / path.name).read_text()
        assert path.read_text() == (ROOT / "charts/punchingfist/crds" / path.name).read_text()


def test_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["compile", "--help"])
    assert caught.value.code == 0
    assert "argo submit --from" in capsys.readouterr().out


def test_event_turns_an_alertmanager_payload_into_the_run_event() -> None:
    result = run(
        "event", "-f", str(EXAMPLES / "alerts" / "grouped-two-alerts.json"), "--alert", "1"
    )
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["alert"]["fingerprint"] == event["alerts"][1]["fingerprint"]
    assert set(event["alerts"][0]) == {"fingerprint", "alertname", "severity", "status", "startsAt"}
    assert event["alert"]["alertname"] == event["alert"]["labels"]["alertname"]
    assert event["groupKey"] and len(event["alerts"]) == 2


def test_event_keeps_hostile_text_verbatim() -> None:
    path = EXAMPLES / "alerts" / "hostile-labels.json"
    event = json.loads(run("event", "-f", str(path)).stdout)
    payload = json.loads(path.read_text())
    assert event["alert"]["labels"] == payload["alerts"][0]["labels"]
    assert event["alert"]["annotations"] == payload["alerts"][0]["annotations"]


def test_event_rejects_a_malformed_payload_by_field() -> None:
    result = run("event", "-f", "-", stdin='{"version": "4", "alerts": []}')
    assert result.returncode == 1
    assert "invalid Alertmanager payload" in result.stderr
    assert "payload.groupKey: required field is missing" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--event", "missing.json", "--workflow", "investigate-alert"],
            "missing.json: cannot read",
        ),
        (
            ["--event", "examples/alerts/pod-crashlooping.json", "--workflow", "nope"],
            "no Workflow 'nope' in the input",
        ),
        (["--event", "examples/alerts/pod-crashlooping.json"], "pick one: --workflow"),
        (
            [
                "--event",
                "examples/workflows/investigate-alert.yaml",
                "--workflow",
                "investigate-alert",
            ],
            "not JSON",
        ),
        (
            [
                "--event",
                "examples/alerts/pod-crashlooping.json",
                "--alert",
                "4",
                "--workflow",
                "investigate-alert",
            ],
            "alert 4: the payload has 1 alert(s)",
        ),
        (
            [
                "--event",
                "examples/alerts/pod-crashlooping.json",
                "--workflow",
                "investigate-alert",
                "--replay",
                "/nonexistent",
            ],
            "no scenario.yaml there",
        ),
    ],
    ids=[
        "no-event-file",
        "unknown-workflow",
        "several-workflows",
        "event-not-json",
        "alert-index",
        "bad-replay",
    ],
)
def test_run_refuses_bad_input_before_anything_runs(args: list[str], expected: str) -> None:
    done = run("run", "-f", "examples/workflows", "-f", "examples/sinks", *args)
    assert done.returncode == 1, done.stdout
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("writers", "database"),
    [
        ("2", "sqlite:///{tmp}/pf.db"),
        ("0", "postgresql://pf@127.0.0.1:1/pf"),
        ("9", "postgresql://pf@127.0.0.1:1/pf"),
    ],
    ids=["several-on-sqlite", "none", "more-than-the-pool-serves"],
)
def test_serve_refuses_intake_writers_the_store_cannot_take(
    tmp_path: Path, writers: str, database: str
) -> None:
    done = run(
        "serve",
        "-f",
        "examples/sources",
        "--intake-writers",
        writers,
        "--database-url",
        database.format(tmp=tmp_path),
    )
    assert done.returncode == 1, done.stdout
    assert f"--intake-writers {writers}: give 1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "pf.db").exists()  # refused before the store was touched


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--workers", "2", "--database-url", "sqlite:///{tmp}/pf.db"], "need a PostgreSQL"),
        (["--workers", "0", "--database-url", "postgresql://pf@127.0.0.1:1/pf"], "give 1 to 16"),
        (["--workers", "17", "--database-url", "postgresql://pf@127.0.0.1:1/pf"], "give 1 to 16"),
    ],
    ids=["several-on-sqlite", "none", "too-many"],
)
def test_serve_refuses_workers_the_store_cannot_take(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    done = run("serve", "-f", "examples/sources", *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 1, done.stdout
    assert f"--workers {args[1]}: " in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "pf.db").exists()  # refused before the store was touched


def test_serve_refuses_workers_in_cluster() -> None:
    done = run(
        "serve",
        "--in-cluster",
        "--workers",
        "2",
        "--database-url",
        "postgresql://pf@127.0.0.1:1/pf",
    )
    assert done.returncode == 1, done.stdout
    assert "--workers 2 with --in-cluster is not supported yet" in done.stderr
    assert "Traceback" not in done.stderr
