"""The local engine on small manifests whose steps are real `python -c` processes.

Each test checks a behaviour Argo documents: DAG `depends`, `when`, suspend gates, the exit
handler, retries, deadlines and parallelism. Overlap is judged from the order of recorded
start/finish events, never from wall-clock thresholds.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from punchingfist.engine import (
    ApprovalDecision,
    AutoApprover,
    PollingApprover,
    PromptApprover,
    RunResult,
    run_workflow,
)
from punchingfist.errors import InvalidManifest, NotSupportedYet, PunchingFistError
from tests.engine_support import WRITE, Recorder, dag, manifest, python, result_output

SLEEP = "import time; time.sleep(0.4)"


def run(doc: dict[str, Any], tmp_path: Path, **options: Any) -> tuple[RunResult, Recorder]:
    recorder = Recorder()
    options.setdefault("approver", AutoApprover(True))
    result = run_workflow(doc, workdir=tmp_path, observer=recorder, name="r", **options)
    assert recorder.result is result
    return result, recorder


def phases(result: RunResult) -> dict[str, str]:
    return {node.display_name: node.phase for node in result.nodes.values()}


def writer(name: str = "write", **extra: Any) -> dict[str, Any]:
    """Writes its input `text` as its `result` output."""
    code = "import os; open('result.txt', 'w').write(os.environ['TEXT'])"
    extra.setdefault("outputs", result_output())
    return python(
        name,
        code,
        env=[{"name": "TEXT", "value": "{{inputs.parameters.text}}"}],
        inputs={"parameters": [{"name": "text", "default": "ok"}]},
        **extra,
    )


def args(**values: str) -> dict[str, Any]:
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def test_diamond_runs_in_dependency_order_and_passes_outputs(tmp_path: Path) -> None:
    out = "{{tasks.%s.outputs.parameters.result}}"
    doc = manifest(
        [
            dag(
                [
                    {"name": "a", "template": "write", "arguments": args(text="A")},
                    {
                        "name": "b",
                        "template": "write",
                        "depends": "a",
                        "arguments": args(text=out % "a" + "B"),
                    },
                    {
                        "name": "c",
                        "template": "write",
                        "depends": "a",
                        "arguments": args(text=out % "a" + "C"),
                    },
                    {
                        "name": "d",
                        "template": "write",
                        "depends": "b && c",
                        "arguments": args(text=f"{out % 'b'}+{out % 'c'}"),
                    },
                ]
            ),
            writer(),
        ]
    )
    result, recorder = run(doc, tmp_path)
    assert result.phase == "Succeeded" and result.message == ""
    assert result.node("d").outputs["result"] == "AB+AC"
    for middle in ("b", "c"):
        assert recorder.index("finished", "a") < recorder.index("started", middle)
        assert recorder.index("finished", middle) < recorder.index("started", "d")
    assert result.nodes["r"].type == "DAG" and result.nodes["r.d"].type == "Pod"


def test_depends_on_failure_runs_the_handler_and_omits_the_rest(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag(
                [
                    {"name": "a", "template": "fail"},
                    {"name": "on-failure", "template": "write", "depends": "a.Failed"},
                    {"name": "next", "template": "write", "depends": "a"},
                    {"name": "after-next", "template": "write", "depends": "next"},
                ]
            ),
            python("fail", "raise SystemExit(4)"),
            writer(),
        ]
    )
    result, _ = run(doc, tmp_path)
    assert phases(result) == {
        "r": "Failed",
        "a": "Failed",
        "on-failure": "Succeeded",
        "next": "Omitted",
        "after-next": "Omitted",
    }
    assert result.node("a").exit_code == 4 and "exit code 4" in result.node("a").message
    assert result.phase == "Failed" and result.message.startswith("a Failed")
    assert not (tmp_path / "r.next").exists(), "an omitted task never starts a process"


def test_a_handled_failure_leaves_the_workflow_succeeded(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag(
                [
                    {"name": "a", "template": "fail"},
                    {"name": "cleanup", "template": "write", "depends": "a.Failed || a.Errored"},
                ]
            ),
            python("fail", "raise SystemExit(1)"),
            writer(),
        ]
    )
    result, _ = run(doc, tmp_path)
    assert phases(result)["a"] == "Failed"
    assert result.phase == "Succeeded", "Argo judges a DAG by its leaf tasks"


def test_when_false_skips_and_skipped_outputs_take_their_defaults(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag(
                [
                    {
                        "name": "gated",
                        "template": "write",
                        "when": "'{{workflow.parameters.go}}' == 'yes'",
                    },
                    {
                        "name": "after",
                        "template": "write",
                        "depends": "gated",
                        "arguments": args(text="got {{tasks.gated.outputs.parameters.result}}"),
                    },
                    {"name": "only-if-ran", "template": "write", "depends": "gated.Succeeded"},
                ]
            ),
            writer(outputs=result_output(default="DEFAULT")),
        ],
        arguments={"parameters": [{"name": "go", "value": "no"}]},
    )
    result, _ = run(doc, tmp_path)
    assert phases(result) == {
        "r": "Succeeded",
        "gated": "Skipped",
        "after": "Succeeded",
        "only-if-ran": "Omitted",
    }
    assert result.node("gated").outputs == {"result": "DEFAULT"}
    assert result.node("after").outputs["result"] == "got DEFAULT"
    ran, _ = run(doc, tmp_path / "again", parameters={"go": "yes"})
    assert phases(ran)["gated"] == "Succeeded" and phases(ran)["only-if-ran"] == "Succeeded"


def gated_manifest(duration: str | None = "30") -> dict[str, Any]:
    """The compiler's approval shape: a suspend gate, then the action under `when`."""
    approved = "{{tasks.gate.outputs.parameters.approved}}"
    suspend: dict[str, Any] = {} if duration is None else {"duration": duration}
    outputs = [
        {"name": n, "valueFrom": {"default": d, "supplied": {}}}
        for n, d in (("approved", "false"), ("approver", ""), ("comment", ""))
    ]
    gate = {
        "name": "gate",
        "inputs": {
            "parameters": [{"name": "approved", "default": "false", "enum": ["true", "false"]}]
        },
        "outputs": {"parameters": outputs},
        "suspend": suspend,
    }
    return manifest(
        [
            dag(
                [
                    {"name": "gate", "template": "gate"},
                    {
                        "name": "action",
                        "template": "write",
                        "depends": "gate",
                        "when": f"'{approved}' == 'true'",
                        "arguments": args(text="by {{tasks.gate.outputs.parameters.approver}}"),
                    },
                ]
            ),
            gate,
            writer(),
        ]
    )


def test_approval_approved_runs_the_gated_step(tmp_path: Path) -> None:
    result, recorder = run(gated_manifest(), tmp_path, approver=AutoApprover(True, "alice", "ok"))
    assert result.node("gate").outputs == {"approved": "true", "approver": "alice", "comment": "ok"}
    assert result.node("action").outputs["result"] == "by alice"
    assert recorder.requests[0].display_name == "gate" and recorder.requests[0].run == "r"
    assert recorder.decisions == [ApprovalDecision(True, "alice", "ok")]


def test_approval_denied_skips_the_gated_step(tmp_path: Path) -> None:
    result, _ = run(gated_manifest(), tmp_path, approver=AutoApprover(False, "bob"))
    assert phases(result)["action"] == "Skipped" and result.phase == "Succeeded"
    assert result.node("gate").message == "denied by bob"


def test_approval_deadline_means_denied(tmp_path: Path) -> None:
    approver = PollingApprover()
    result, recorder = run(gated_manifest("1"), tmp_path, approver=approver, poll_interval=0.05)
    assert result.node("gate").outputs["approved"] == "false"
    assert phases(result)["action"] == "Skipped"
    assert recorder.decisions == [None]
    assert "deadline" in result.node("gate").message
    assert approver.pending() == [], "an expired gate is no longer offered for a decision"


def test_polling_approver_is_fed_from_another_thread(tmp_path: Path) -> None:
    approver = PollingApprover()

    def server() -> None:
        while not approver.pending():
            time.sleep(0.01)
        request = approver.pending()[0]
        approver.decide(request.run, request.display_name, ApprovalDecision(True, "carol"))

    feeder = threading.Thread(target=server)
    feeder.start()
    result, _ = run(gated_manifest(None), tmp_path, approver=approver, poll_interval=0.02)
    feeder.join()
    assert result.node("action").outputs["result"] == "by carol"
    assert approver.pending() == []


def test_prompt_approver_reads_answers_and_treats_end_of_input_as_denied() -> None:
    from datetime import UTC, datetime

    from punchingfist.engine import ApprovalRequest

    def request(node: str) -> ApprovalRequest:
        return ApprovalRequest("run", "uid", node, node, "fix", datetime.now(UTC), None)

    screen = io.StringIO()
    reading, writing = os.pipe()
    prompt = PromptApprover(os.fdopen(reading), screen, approver="dave")
    first, second = request("run.a"), request("run.b")
    assert prompt.poll(first) is None and prompt.poll(second) is None
    assert screen.getvalue().count("approve step") == 1, "one question at a time"
    os.write(writing, b"y raise the limit\n")
    decision = None
    while decision is None:
        time.sleep(0.01)
        decision = prompt.poll(first)
    assert decision == ApprovalDecision(True, "dave", "raise the limit")
    os.close(writing)
    decision = None
    while decision is None:
        time.sleep(0.01)
        decision = prompt.poll(second)
    assert not decision.approved and "end of input" in decision.comment
    assert screen.getvalue().count("approve step 'fix'") == 2


def exit_handler_manifest(main_code: str) -> dict[str, Any]:
    code = (
        "import os, json; open('result.txt', 'w').write(json.dumps("
        "[os.environ['STATUS'], os.environ['GLOBAL'], json.loads(os.environ['FAILURES'])]))"
    )
    return manifest(
        [
            dag([{"name": "work", "template": "work"}]),
            python("work", main_code, outputs=result_output(global_name="pf_result_work")),
            dag([{"name": "report", "template": "report"}], name="exit"),
            python(
                "report",
                code,
                outputs=result_output(),
                env=[
                    {"name": "STATUS", "value": "{{workflow.status}}"},
                    {"name": "FAILURES", "value": "{{workflow.failures}}"},
                    {
                        "name": "GLOBAL",
                        "value": "{{=workflow?.outputs?.parameters?.pf_result_work ?? ''}}",
                    },
                ],
            ),
        ],
        onExit="exit",
    )


def test_exit_handler_sees_failed_and_the_failed_steps_outputs(tmp_path: Path) -> None:
    failing = "open('result.txt', 'w').write('partial'); raise SystemExit(1)"
    result, _ = run(exit_handler_manifest(failing), tmp_path)
    status, exported, failures = json.loads(
        result.node("report", exit_handler=True).outputs["result"]
    )
    assert (status, exported) == ("Failed", "partial")
    assert [f["displayName"] for f in failures] == ["work"]
    assert result.phase == "Failed" and result.outputs == {"pf_result_work": "partial"}


def test_exit_handler_sees_succeeded(tmp_path: Path) -> None:
    result, _ = run(exit_handler_manifest(WRITE), tmp_path)
    status, exported, failures = json.loads(
        result.node("report", exit_handler=True).outputs["result"]
    )
    assert (status, exported, failures) == ("Succeeded", "ok", [])
    assert result.phase == "Succeeded"


def test_a_failing_exit_handler_fails_a_succeeded_workflow(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag([{"name": "work", "template": "ok"}]),
            python("ok", "pass"),
            dag([{"name": "notify", "template": "broken"}], name="exit"),
            python("broken", "raise SystemExit(3)"),
        ],
        onExit="exit",
    )
    result, _ = run(doc, tmp_path)
    assert result.phase == "Failed" and "notify Failed" in result.message


COUNTING = "import os, pathlib; p = pathlib.Path(os.environ['COUNTER']); n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); raise SystemExit(0 if n + 1 >= int(os.environ['PASS_ON']) else 1)"  # noqa: E501


def counting(tmp_path: Path, pass_on: int, retry: dict[str, Any]) -> dict[str, Any]:
    env = [
        {"name": "COUNTER", "value": str(tmp_path / "counter")},
        {"name": "PASS_ON", "value": str(pass_on)},
    ]
    return manifest(
        [
            dag([{"name": "flaky", "template": "flaky"}]),
            python("flaky", COUNTING, env=env, retryStrategy=retry),
        ]
    )


def test_retries_with_backoff_until_success(tmp_path: Path) -> None:
    retry = {"limit": 3, "backoff": {"duration": "50ms", "factor": 2}}
    result, recorder = run(counting(tmp_path, 3, retry), tmp_path / "w")
    node = result.node("flaky")
    assert (node.phase, node.attempts) == ("Succeeded", 3)
    assert (tmp_path / "counter").read_text() == "xxx"
    assert recorder.retries == [("flaky", 0.05), ("flaky", 0.1)]
    assert node.workdir == tmp_path / "w" / "r.flaky" / "attempt-3"


def test_retries_stop_at_the_limit_and_cap_the_backoff(tmp_path: Path) -> None:
    retry = {
        "limit": 2,
        "retryPolicy": "Always",
        "backoff": {"duration": "20ms", "factor": 10, "cap": "50ms"},
    }
    result, recorder = run(counting(tmp_path, 99, retry), tmp_path / "w")
    assert (result.node("flaky").phase, result.node("flaky").attempts) == ("Failed", 3)
    assert [delay for _, delay in recorder.retries] == [0.02, 0.05]


def test_retry_policy_and_max_duration_are_honoured(tmp_path: Path) -> None:
    on_error = {"limit": 3, "retryPolicy": "OnError"}
    result, _ = run(counting(tmp_path, 99, on_error), tmp_path / "a")
    assert result.node("flaky").attempts == 1, "OnError does not retry a Failed node"
    limited = {"limit": 3, "backoff": {"duration": "5s", "maxDuration": "1s"}}
    result, recorder = run(counting(tmp_path / "b", 99, limited), tmp_path / "b")
    assert result.node("flaky").attempts == 1 and recorder.retries == []
    assert "maxDuration" in result.node("flaky").message


def test_a_command_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag([{"name": "a", "template": "missing"}]),
            {
                "name": "missing",
                "container": {"image": "x", "command": ["/nonexistent/tool"]},
                "retryStrategy": {"limit": 1, "retryPolicy": "OnError"},
            },
        ]
    )
    result, _ = run(doc, tmp_path)
    node = result.node("a")
    assert (node.phase, node.attempts) == ("Error", 2) and "cannot start" in node.message
    assert result.phase == "Error"


def pid_writer(seconds: int) -> str:
    return f"import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep({seconds})"


def assert_gone(pid_file: Path) -> None:
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.timeout(30)
def test_workflow_deadline_kills_steps_and_still_runs_the_exit_handler(tmp_path: Path) -> None:
    doc = exit_handler_manifest(pid_writer(60))
    doc["spec"]["activeDeadlineSeconds"] = 1
    result, _ = run(doc, tmp_path)
    work = result.node("work")
    assert work.phase == "Failed" and "deadline" in work.message
    assert_gone(tmp_path / "r.work" / "attempt-1" / "pid")
    status, _, _ = json.loads(result.node("report", exit_handler=True).outputs["result"])
    assert status == "Failed" and result.phase == "Failed"


@pytest.mark.timeout(30)
def test_workflow_deadline_ends_a_pending_approval(tmp_path: Path) -> None:
    doc = gated_manifest(None)
    doc["spec"]["activeDeadlineSeconds"] = 1
    result, _ = run(doc, tmp_path, approver=PollingApprover(), poll_interval=0.05)
    assert phases(result)["gate"] == "Failed" and "action" not in phases(result)


@pytest.mark.timeout(30)
def test_template_deadline_kills_only_that_step(tmp_path: Path) -> None:
    doc = manifest(
        [
            dag(
                [
                    {"name": "slow", "template": "slow"},
                    {"name": "quick", "template": "write"},
                    {"name": "after", "template": "write", "depends": "slow.Failed"},
                ]
            ),
            python("slow", pid_writer(60), activeDeadlineSeconds=1),
            writer(),
        ]
    )
    result, _ = run(doc, tmp_path)
    assert phases(result) == {
        "r": "Succeeded",
        "slow": "Failed",
        "quick": "Succeeded",
        "after": "Succeeded",
    }
    assert "longer than the specified deadline" in result.node("slow").message
    assert_gone(tmp_path / "r.slow" / "attempt-1" / "pid")


def concurrency(recorder: Recorder, names: set[str]) -> int:
    """The most nodes among `names` running at once, from the order of events."""
    running = peak = 0
    for kind, name, _ in recorder.events:
        if name in names and kind == "started":
            running += 1
            peak = max(peak, running)
        elif name in names and kind.startswith("finished"):
            running -= 1
    return peak


def sleepers(**spec: Any) -> dict[str, Any]:
    tasks = [{"name": n, "template": "sleep"} for n in ("s1", "s2", "s3")]
    parallel = spec.pop("dag_parallelism", None)
    main = dag(tasks, **({"parallelism": parallel} if parallel else {}))
    return manifest([main, python("sleep", SLEEP)], **spec)


def test_independent_tasks_overlap(tmp_path: Path) -> None:
    _, recorder = run(sleepers(), tmp_path)
    assert concurrency(recorder, {"s1", "s2", "s3"}) == 3


def test_workflow_parallelism_bounds_running_steps(tmp_path: Path) -> None:
    _, recorder = run(sleepers(parallelism=1), tmp_path)
    assert concurrency(recorder, {"s1", "s2", "s3"}) == 1


def test_dag_parallelism_bounds_its_tasks(tmp_path: Path) -> None:
    _, recorder = run(sleepers(dag_parallelism=2), tmp_path)
    assert concurrency(recorder, {"s1", "s2", "s3"}) == 2


def test_nested_dag_templates_pass_inputs_down(tmp_path: Path) -> None:
    inner = dag(
        [{"name": "leaf", "template": "write", "arguments": args(text="{{inputs.parameters.x}}!")}],
        name="inner",
        inputs={"parameters": [{"name": "x"}]},
    )
    outer = dag([{"name": "outer", "template": "inner", "arguments": args(x="deep")}])
    doc = manifest([outer, inner, writer()])
    result, _ = run(doc, tmp_path)
    assert result.nodes["r.outer"].type == "DAG"
    assert result.nodes["r.outer.leaf"].outputs["result"] == "deep!"


def test_secrets_come_from_the_mapping_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    code = "import os; open('result.txt', 'w').write(os.environ['TOKEN'])"
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]
    doc = manifest(
        [dag([{"name": "a", "template": "t"}]), python("t", code, env=env, outputs=result_output())]
    )
    result, _ = run(doc, tmp_path / "with", secrets={"s/token": "xoxb-1"})
    assert result.node("a").outputs["result"] == "xoxb-1"
    result, _ = run(doc, tmp_path / "without")
    assert result.node("a").phase == "Error"
    assert "missing secret 's' key 'token'" in result.node("a").message
    assert "xoxb" not in json.dumps([n.message for n in result.nodes.values()])


def test_an_input_outside_its_enum_is_an_error(tmp_path: Path) -> None:
    doc = gated_manifest()
    doc["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"] = args(approved="maybe")
    result, _ = run(doc, tmp_path)
    assert result.node("gate").phase == "Error" and "not one of" in result.node("gate").message
    assert phases(result)["action"] == "Omitted"


@pytest.mark.parametrize(
    ("change", "error", "named"),
    [
        (
            lambda d: d["spec"]["templates"][1].update(script={"source": "x"}),
            NotSupportedYet,
            "spec.templates[1](write).script",
        ),
        (
            lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0].update(withItems=[1, 2]),
            NotSupportedYet,
            "tasks[0](a).withItems",
        ),
        (
            lambda d: d["spec"]["templates"][1]["container"].update(volumeMounts=[]),
            NotSupportedYet,
            "container.volumeMounts",
        ),
        (lambda d: d["spec"].update(volumes=[]), NotSupportedYet, "spec.volumes"),
        (
            lambda d: d["spec"]["templates"][1].update(
                retryStrategy={"limit": 1, "retryPolicy": "OnTransientError"}
            ),
            NotSupportedYet,
            "OnTransientError",
        ),
        (
            lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]["parameters"][
                0
            ].update(value="{{steps.x.outputs.result}}"),
            NotSupportedYet,
            "{{steps.x.outputs.result}}",
        ),
        (
            lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0].update(depends="a"),
            InvalidManifest,
            "dependency cycle a -> a",
        ),
        (
            lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0].update(template="nope"),
            InvalidManifest,
            "no template 'nope'",
        ),
        (
            lambda d: d["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]["parameters"][
                0
            ].update(value="{{tasks.b.outputs.parameters.result}}"),
            InvalidManifest,
            "not a dependency",
        ),
    ],
)
def test_unsupported_or_broken_manifests_are_refused_before_anything_runs(
    tmp_path: Path, change: Any, error: type[Exception], named: str
) -> None:
    doc = manifest(
        [
            dag(
                [
                    {"name": "a", "template": "write", "arguments": args(text="x")},
                    {"name": "b", "template": "write"},
                ]
            ),
            writer(),
        ]
    )
    change(doc)
    with pytest.raises(error) as caught:
        run(doc, tmp_path / "w")
    assert named in str(caught.value)
    assert not (tmp_path / "w").exists(), "nothing ran"


def test_parameters_must_be_declared(tmp_path: Path) -> None:
    doc = manifest([dag([{"name": "a", "template": "write"}]), writer()])
    with pytest.raises(PunchingFistError, match="'nope' is not a parameter"):
        run(doc, tmp_path, parameters={"nope": "1"})


def test_a_broken_observer_does_not_stop_the_run(tmp_path: Path) -> None:
    class Broken(Recorder):
        def on_node_started(self, run: Any, node: Any) -> None:
            raise RuntimeError("observer bug")

    doc = manifest([dag([{"name": "a", "template": "write"}]), writer()])
    result = run_workflow(doc, workdir=tmp_path, approver=AutoApprover(True), observer=Broken())
    assert result.phase == "Succeeded"
