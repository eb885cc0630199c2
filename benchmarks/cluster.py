"""Runs on the real single-node cluster (not a test: it prints figures).

Needs the cluster running (`make cluster-up`). Progress goes to stderr, the figures to stdout
at the end. Times are taken on this host's monotonic clock: the Argo Workflows and their pods
are followed with `kubectl get --watch` (an event is seen as the API server commits it, with
no polling), the model's requests by the fake OpenAI server's receive times.

1. The main job from an alert: a webhook Source starts a one-step agent Workflow whose model
   is the tests' fake OpenAI server on the pod bridge, scripted to answer at once with a final
   answer. ALERT_RUNS new alerts (each with its own alertname and fingerprint, so each starts
   a run) are POSTed one after another, each once the previous run finished; p50 and max of
   the time from the POST to: the webhook's answer; the Argo Workflow created; the agent pod
   Running; the model's first request; the Argo Workflow Succeeded.
2. The same Workflow on the local engine: LOCAL_RUNS times `punchingfist run` with the fake
   on loopback, from starting the command (the alert in) to the model's first request and to
   the command's exit; the ratio Argo / local of both, and whether alert -> first model
   request on Argo meets GOAL_FIRST_REQUEST (p50).
3. A one-step and a five-step Workflow of no-op `cli` steps, each submitted RUNS times with
   `argo submit`:
   - submit -> Succeeded: from running `argo submit` to the Argo Workflow's phase Succeeded;
   - pod overhead per step: an Argo node's wall time (pod created -> outputs reported) less
     the time the step's own command took (its result's `seconds`), i.e. what scheduling, the
     sandbox, the executor's init and wait containers and reporting cost each step.
4. BURST alerts POSTed at once (one notification each, in parallel): how many runs
   Succeeded, the time from the POSTs to the last one finished and to each stage of 1, and
   the peak resident memory of the operator (`punchingfist serve --in-cluster`) and of Argo's
   workflow-controller, found by their command lines in /proc: VmRSS sampled every
   RSS_INTERVAL seconds during the burst (their lifetime VmHWM is printed beside it; the
   kernel raises it lazily, so it can read below a sampled peak).

Each agent run costs one scripted model turn; a first alert and a first submit warm the
operator, the node and the Source up and are not counted. A run that takes longer than
TIMEOUT stops the benchmark. Whatever it created is deleted at the end (the alerts stay in
the operator's store). On this cluster a step takes about 10 s from one Argo step to the
next however short its pod, which matches the workflow-controller's DEFAULT_REQUEUE_TIME
(10 s by default).
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hack.cluster.layout import NODE_IP, ROOT
from tests.cluster.support import (
    FINISHED,
    NAMESPACE,
    LiveCluster,
    ready_template,
    unique,
    workflow,
)
from tests.fakes.openai_server import FakeOpenAI

RUNS = 2
"""`argo submit` runs of each no-op Workflow (one step, five steps)."""
ALERT_RUNS = 10
"""Alerts posted one after another to the webhook Source of the agent Workflow."""
LOCAL_RUNS = 10
"""`punchingfist run` of the same agent Workflow."""
BURST = 20
"""Alerts posted at once."""
RSS_INTERVAL = 0.25
"""Seconds between two readings of the operator's and the controller's VmRSS in the burst."""
GOAL_FIRST_REQUEST = 5.0
"""Alert -> first model request on Argo, p50 seconds (#20)."""
EXAMPLE_ALERT = ROOT / "examples" / "alerts" / "pod-crashlooping.json"
TIMEOUT = 300.0
"""How long one run (or the whole burst) may take before the benchmark gives up."""

FINAL_ANSWER: dict[str, Any] = {
    "thought": "Nothing to look at: answer at once.",
    "action": {
        "kind": "final_answer",
        "summary": "Benchmark run.",
        "problem_summary": "Benchmark alert.",
        "root_cause": "None: the alert is synthetic.",
        "can_auto_fix": False,
        "confidence": 0.5,
        "escalation_notes": "",
        "severity_assessment": "info",
        "recommendations": [],
        "evidence": [],
    },
}
ALERT_STAGES = (
    "webhook answered",
    "Argo Workflow created",
    "agent pod Running",
    "first model request",
    "run Succeeded",
)
PROCESSES = {
    "operator": "punchingfist serve --in-cluster",
    "workflow-controller": "workflow-controller",
}


def progress(text: str) -> None:
    print(f".. {text}", file=sys.stderr, flush=True)


# -- following the cluster ---------------------------------------------------------------------


class Watch:
    """`kubectl get KIND --watch` in the background: when each object (named by `key`, a
    jsonpath) was first seen at all (phase ""), and first seen in each `.status.phase`."""

    def __init__(self, cluster: LiveCluster, kind: str, key: str, selector: str = "") -> None:
        template = "{" + key + '}{" "}{.status.phase}{"\\n"}'
        self.argv = [
            cluster.binaries["KUBECTL"],
            "--kubeconfig",
            str(cluster.layout.kubeconfig),
            "get",
            kind,
            "-n",
            NAMESPACE,
            "--watch",
            "-o",
            f"jsonpath={template}",
            *(["-l", selector] if selector else []),
        ]
        self.seen: dict[tuple[str, str], float] = {}
        self._changed = threading.Condition()
        self._stopped = False
        self._process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopped = True
        if self._process is not None:
            self._process.terminate()
        self._thread.join(timeout=5)

    def _follow(self) -> None:
        while not self._stopped:  # the API server ends a watch now and then: start another
            with subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            ) as process:
                self._process = process
                assert process.stdout is not None
                for line in process.stdout:
                    now = time.monotonic()
                    name, _, phase = line.strip().partition(" ")
                    with self._changed:
                        self.seen.setdefault((name, ""), now)
                        self.seen.setdefault((name, phase.strip()), now)
                        self._changed.notify_all()
            time.sleep(0.2)

    def first(self, name: str, phase: str = "") -> float | None:
        with self._changed:
            return self.seen.get((name, phase))

    def until(self, names: Sequence[str], phases: Sequence[str], timeout: float) -> None:
        """Wait until every one of `names` was seen in one of `phases`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(any((n, p) in self.seen for p in phases) for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    phases_seen = sorted({p for (n, p) in self.seen if n in names})
                    raise SystemExit(
                        f"waited {timeout:.0f} s for {len(names)} of {self.argv[4]} to be "
                        f"{'/'.join(phases)}; phases seen: {phases_seen}"
                    )
                self._changed.wait(left)


class Memory:
    """The peak VmRSS of the processes PROCESSES name, read every RSS_INTERVAL seconds in the
    background while it is entered."""

    def __init__(self) -> None:
        self.pids = {name: _pid(pattern) for name, pattern in PROCESSES.items()}
        self.before = {name: _status(pid, "VmRSS") for name, pid in self.pids.items()}
        self.peak = dict(self.before)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stopped.wait(RSS_INTERVAL):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], _status(pid, "VmRSS"))

    def report(self) -> list[str]:
        lines = []
        for name, pid in self.pids.items():
            if pid is None:
                lines.append(f"    {name}: no process whose command line has {PROCESSES[name]!r}")
                continue
            lines.append(
                f"    {name} (pid {pid}): peak VmRSS {self.peak[name] / 1024:.0f} MiB "
                f"(before the burst {self.before[name] / 1024:.0f} MiB; lifetime VmHWM "
                f"{_status(pid, 'VmHWM') / 1024:.0f} MiB)"
            )
        return lines


def _pid(pattern: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pattern in command and "benchmarks/cluster.py" not in command:
            return int(entry.name)
    return None


def _status(pid: int | None, field: str) -> int:
    """A /proc/PID/status field in KiB (0 when the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines() if pid else []
    except OSError:
        return 0
    values = [line.split()[1] for line in lines if line.startswith(f"{field}:")]
    return int(values[0]) if values else 0


# -- alerts ----------------------------------------------------------------------------------


def _alert() -> tuple[str, dict[str, Any]]:
    """A new alert (its own alertname and fingerprint) as Alertmanager posts it."""
    name = f"PfBench{uuid.uuid4().hex[:10]}"
    payload: dict[str, Any] = json.loads(EXAMPLE_ALERT.read_text())
    payload["groupKey"] = f'{{}}:{{alertname="{name}"}}'
    payload["groupLabels"] = {"alertname": name}
    payload["commonLabels"] = {**payload["commonLabels"], "alertname": name}
    alert = payload["alerts"][0]
    alert["labels"] = {**alert["labels"], "alertname": name}
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    alert["startsAt"] = datetime.now(UTC).isoformat()
    return name, payload


def _post(url: str, payload: dict[str, Any]) -> str:
    """POST a notification to a webhook Source: the run it started."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.load(response)
    (run,) = answer["runs"]
    return str(run)


def _first_request(llm: FakeOpenAI, alertname: str) -> float | None:
    """When the model first received a request about the alert named `alertname`."""
    received = list(llm.received)  # before the requests: each is appended after its request
    requests = llm.requests[: len(received)]
    times = [t for t, r in zip(received, requests, strict=True) if alertname in json.dumps(r)]
    return min(times) if times else None


class AlertBench:
    """The agent Workflow behind a webhook Source, with the watches that time its runs."""

    def __init__(
        self, cluster: LiveCluster, llm: FakeOpenAI, url: str, runs: Watch, pods: Watch
    ) -> None:
        self.cluster, self.llm, self.url, self.runs, self.pods = cluster, llm, url, runs, pods

    def post(self, payload: dict[str, Any]) -> tuple[str, float]:
        """The run the alert started, and when the webhook answered."""
        run = _post(self.url, payload)
        self.cluster.created.append(("workflows.argoproj.io", run))
        return run, time.monotonic()

    def stages(self, alertname: str, run: str, posted: float, answered: float) -> list[float]:
        """Seconds from the POST to each of ALERT_STAGES (nan when not seen), once the run
        finished."""
        self.runs.until([run], FINISHED, TIMEOUT)
        seen = [
            answered,
            self.runs.first(run),
            self.pods.first(run, "Running"),
            _first_request(self.llm, alertname),
            self.runs.first(run, "Succeeded"),
        ]
        return [t - posted if t is not None else float("nan") for t in seen]

    def one(self) -> list[float]:
        alertname, payload = _alert()
        posted = time.monotonic()
        run, answered = self.post(payload)
        stages = self.stages(alertname, run, posted, answered)
        if stages[-1] != stages[-1]:  # nan: never Succeeded
            raise SystemExit(f"{run} did not succeed: {self.cluster.describe_run(run)}")
        return stages

    def burst(self, count: int) -> tuple[float, list[list[float]]]:
        """Post `count` alerts at once: seconds from the POSTs to the last run finished, and
        each run's `stages`."""
        alerts = [_alert() for _ in range(count)]
        posted = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            answers = list(pool.map(lambda a: self.post(a[1]), alerts))
        self.runs.until([run for run, _ in answers], FINISHED, TIMEOUT)
        stages = [
            self.stages(alertname, run, posted, answered)
            for (alertname, _), (run, answered) in zip(alerts, answers, strict=True)
        ]
        ended = [self.runs.first(run, p) for run, _ in answers for p in FINISHED]
        return max(t for t in ended if t is not None) - posted, stages


def _local_runs(document: dict[str, Any], count: int) -> list[tuple[float, float]]:
    """`punchingfist run` of the Workflow `count` times, the model a fake on loopback: seconds
    from starting the command to the model's first request, and to its exit."""
    timings = []
    with tempfile.TemporaryDirectory() as folder, FakeOpenAI([FINAL_ANSWER] * count) as llm:
        manifest = Path(folder) / "workflow.yaml"
        manifest.write_text(yaml.safe_dump(document))
        for index in range(count):
            alertname, payload = _alert()
            event = Path(folder) / f"alert{index}.json"
            event.write_text(json.dumps(payload))
            argv = [sys.executable, "-m", "punchingfist.cli", "run", "-f", str(manifest)]
            argv += ["--event", str(event), "--llm-endpoint", llm.url, "--llm-model", "fake"]
            argv += ["--workdir", str(Path(folder) / f"run{index}"), "-q", "-o", "json"]
            started = time.monotonic()
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
            ended = time.monotonic()
            phase = json.loads(done.stdout).get("phase") if done.returncode == 0 else None
            if phase != "Succeeded":
                raise SystemExit(f"punchingfist run ended {phase}:\n{done.stderr[-3000:]}")
            first = _first_request(llm, alertname)
            timings.append(((first or float("nan")) - started, ended - started))
    return timings


# -- argo submit of no-op steps ----------------------------------------------------------------


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _measure(cluster: LiveCluster, runs: Watch, template: str) -> tuple[float, list[float]]:
    """Seconds from submit to Succeeded, and each step pod's overhead."""
    started = time.monotonic()
    run = cluster.submit(template)
    runs.until([run], FINISHED, TIMEOUT)
    finished = runs.first(run, "Succeeded")
    if finished is None:
        raise SystemExit(f"{run} did not succeed: {cluster.describe_run(run)}")
    overheads = []
    for node in cluster.argo_workflow(run)["status"]["nodes"].values():
        if node.get("type") != "Pod":
            continue
        wall = (_time(node["finishedAt"]) - _time(node["startedAt"])).total_seconds()
        result = next(p for p in node["outputs"]["parameters"] if p["name"] == "result")
        own = float(json.loads(result["value"]).get("seconds") or 0.0)
        overheads.append(wall - own)
    return finished - started, overheads


# -- the report --------------------------------------------------------------------------------


def _spread(values: Sequence[float], unit: Callable[[float], str]) -> str:
    seen = [v for v in values if v == v]  # not nan
    if not seen:
        return "not seen"
    missing = f", seen in {len(seen)} of {len(values)}" if len(seen) < len(values) else ""
    return f"p50 {unit(statistics.median(seen))}  max {unit(max(seen))}{missing}"


def _s(value: float) -> str:
    return f"{value:6.2f} s"


@dataclass
class Figures:
    alerts: list[list[float]] = field(default_factory=list)
    """Per alert posted in turn, seconds from its POST to each of ALERT_STAGES."""
    local: list[tuple[float, float]] = field(default_factory=list)
    """Per `punchingfist run`, seconds to the first model request and to its exit."""
    totals: dict[str, list[float]] = field(default_factory=lambda: {"1 step ": [], "5 steps": []})
    """`argo submit` -> Succeeded of the one-step and the five-step Workflow."""
    overheads: list[float] = field(default_factory=list)
    """Each step pod's overhead."""
    last: float = 0.0
    """Seconds from the burst's POSTs to its last run finished."""
    burst: list[list[float]] = field(default_factory=list)
    """Per alert of the burst, seconds from the POSTs to each of ALERT_STAGES."""
    memory: list[str] = field(default_factory=list)


def _collect(cluster: LiveCluster, llm: FakeOpenAI, runs: Watch, pods: Watch) -> Figures:
    figures = Figures()
    one, five, agent = unique("bench-one"), unique("bench-five"), unique("bench-agent")
    step = {"type": "cli", "command": "true"}
    investigate = {
        "name": "investigate",
        "type": "agent",
        "goal": "Why does the alert fire?",
        "tools": ["kubectl"],
        "maxIterations": 2,
        "policy": {"safety": {"allowedNamespaces": [NAMESPACE]}},
    }
    llm_config = {"provider": "openai-compatible", "endpoint": llm.url, "model": "fake"}
    document = workflow(agent, [investigate], llmConfig=llm_config)
    path = f"/webhook/{agent}"
    progress("applying the Workflows and the webhook Source")
    cluster.apply(workflow(one, [{"name": "only", **step}]))
    cluster.apply(workflow(five, [{"name": f"s{n}", **step} for n in range(5)]))
    cluster.apply(copy.deepcopy(document))
    cluster.apply(
        {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Source",
            "metadata": {"name": agent, "namespace": NAMESPACE},
            # No coalescing window: the figures are the path's own latency. A Source's default
            # window (2 s, spec.config.investigation.window) adds itself to every figure.
            "spec": {
                "type": "webhook",
                "config": {"path": path, "investigation": {"window": "0s"}},
                "triggerWorkflow": agent,
            },
        }
    )
    for name in (one, five, agent):
        ready_template(cluster, name)
    bench = AlertBench(cluster, llm, cluster.operator_url() + path, runs, pods)

    progress("warming up: one alert (once the Source is served), one argo submit")
    (warm,) = cluster.notify(path, _alert()[1], timeout=60)["runs"]
    cluster.created.append(("workflows.argoproj.io", warm))
    runs.until([warm], FINISHED, TIMEOUT)
    _measure(cluster, runs, one)

    for index in range(ALERT_RUNS):
        figures.alerts.append(bench.one())
        progress(f"alert {index + 1}/{ALERT_RUNS}: Succeeded {figures.alerts[-1][-1]:.1f} s")

    progress(f"local engine: {LOCAL_RUNS} x punchingfist run")
    figures.local = _local_runs(document, LOCAL_RUNS)

    for index in range(RUNS):
        for label, name in zip(figures.totals, (one, five), strict=True):
            elapsed, steps = _measure(cluster, runs, name)
            figures.totals[label].append(elapsed)
            figures.overheads += steps
        progress(f"argo submit {index + 1}/{RUNS}")

    progress(f"burst: {BURST} alerts at once")
    with Memory() as memory:
        figures.last, figures.burst = bench.burst(BURST)
    figures.memory = memory.report()
    return figures


def _stages(runs: Sequence[Sequence[float]]) -> None:
    """Print p50 and max of each of ALERT_STAGES over `runs`."""
    for stage, values in zip(ALERT_STAGES, zip(*runs, strict=True), strict=True):
        print(f"    {stage:<22} {_spread(values, _s)}")


def _report(figures: Figures) -> None:
    print(
        f"  alert POST -> (agent Workflow, webhook Source with window 0s, {ALERT_RUNS} alerts in "
        "turn; the default 2 s window adds 2 s):"
    )
    _stages(figures.alerts)
    local_first, local_done = (list(v) for v in zip(*figures.local, strict=True))
    print(f"  the same Workflow on the local engine ({LOCAL_RUNS} x punchingfist run):")
    print(f"    {'first model request':<22} {_spread(local_first, _s)}")
    print(f"    {'done (command exits)':<22} {_spread(local_done, _s)}")
    argo_first = statistics.median(run[3] for run in figures.alerts if run[3] == run[3])
    argo_done = statistics.median(run[4] for run in figures.alerts)
    ratio_first = argo_first / statistics.median(local_first)
    ratio_done = argo_done / statistics.median(local_done)
    print(f"  Argo / local (p50): first model request x{ratio_first:.1f}, done x{ratio_done:.1f}")
    verdict = "met" if argo_first < GOAL_FIRST_REQUEST else "NOT met"
    print(
        f"  goal alert -> first model request < {GOAL_FIRST_REQUEST:.0f} s p50 on Argo: "
        f"{argo_first:.2f} s, {verdict}"
    )
    print(f"  argo submit of no-op cli steps, {RUNS} runs each:")
    for label, values in figures.totals.items():
        print(
            f"    {label}: argo submit -> Succeeded median {statistics.median(values):.1f} s "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    overheads = figures.overheads
    print(
        f"    pod overhead per step: median {statistics.median(overheads):.2f} s "
        f"(min {min(overheads):.2f}, max {max(overheads):.2f}; {len(overheads)} pods)"
    )
    succeeded = sum(run[-1] == run[-1] for run in figures.burst)
    print(
        f"  {BURST} alerts at once: {succeeded}/{BURST} runs Succeeded, the last finished "
        f"{figures.last:.1f} s after the POSTs; from the POSTs to:"
    )
    _stages(figures.burst)
    print(f"  peak memory in the burst (VmRSS read every {RSS_INTERVAL} s):")
    print("\n".join(figures.memory))


def main() -> int:
    found = LiveCluster.find()
    if isinstance(found, str):
        print(f"cluster benchmark skipped: {found}")
        return 0
    cluster = found
    begun = time.monotonic()
    key = ".metadata.labels.workflows\\.argoproj\\.io/workflow"
    with (
        FakeOpenAI([FINAL_ANSWER] * (ALERT_RUNS + BURST + 5), host=NODE_IP) as llm,
        Watch(cluster, "workflows.argoproj.io", ".metadata.name") as runs,
        Watch(cluster, "pods", key, "workflows.argoproj.io/workflow") as pods,
    ):
        try:
            figures = _collect(cluster, llm, runs, pods)
        finally:
            cluster.cleanup()
    print(f"cluster: on {cluster.layout.kubeconfig}")
    _report(figures)
    print(f"  benchmark wall time {time.monotonic() - begun:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
