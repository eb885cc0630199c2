"""A live scenario's fault made real (docs/evals.md, Live): its namespace created, its manifests
applied, its `wait` conditions reached; the namespace deleted afterwards, whatever happened.

    prepared(scenario, kubeconfig, log)   the context the investigation runs in; yields the
                                          environment the tools need ({"KUBECONFIG": path})
    unmet(condition, pods, events)        why one WaitFor does not hold yet, from the JSON of
                                          `kubectl get pods` and `kubectl get events`

It drives the `kubectl` binary (what the tools under test use too), not a client library: only
punchingfist.kube talks to the API. A manifest's `${EVAL_...}` placeholders are replaced from the
environment (`${EVAL_IMAGE}`: an image the cluster can pull with python3 and sh), so one
scenario runs on clusters whose registries differ.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from punchingfist.errors import PunchingFistError
from punchingfist.evals.scenarios import Live, Scenario, WaitFor

KUBECTL = "kubectl"
POLL_SECONDS = 2.0
COMMAND_SECONDS = 60.0
GONE_SECONDS = 120.0
"""How long a left-over namespace (from a crashed earlier run) may take to go away."""
MANAGED_BY_LABEL, MANAGED_BY = "app.kubernetes.io/managed-by", "punchingfist-eval"
"""The label of every namespace an eval makes: only such a namespace is ever deleted."""
PLACEHOLDER = re.compile(r"\$\{(EVAL_[A-Z0-9_]+)\}")

Log = Callable[[str], None]
Json = dict[str, Any]


class LiveError(PunchingFistError):
    """A live scenario's fault could not be made: kubectl failed, or a condition never held."""


# -- the conditions ---------------------------------------------------------------------------


def unmet(condition: WaitFor, pods: list[Json], events: list[Json]) -> str | None:
    """Why `condition` does not hold, saying what was seen; None when it holds. `pods` are the
    pods of its selector (all of the namespace's without one), `events` the namespace's."""
    problems = []
    if condition.event and not any(e.get("reason") == condition.event for e in events):
        seen = sorted({str(e.get("reason")) for e in events})
        problems.append(
            f"no event with reason {condition.event} (events seen: {', '.join(seen) or 'none'})"
        )
    checks_pods = condition.reason or condition.phase or condition.restarts
    if condition.selector is not None or checks_pods:
        if not pods:
            problems.append(
                "no pods" + (f" match {condition.selector}" if condition.selector else "")
            )
        elif checks_pods and not any(_pod_holds(condition, pod) for pod in pods):
            problems.append(
                f"no pod has {_checks(condition)}; pods seen: "
                + "; ".join(_pod_seen(pod) for pod in pods)
            )
    return "; ".join(problems) or None


def _pod_holds(condition: WaitFor, pod: Json) -> bool:
    status = pod.get("status") or {}
    if condition.phase and status.get("phase") != condition.phase:
        return False
    if condition.reason and not set(condition.reason) & pod_reasons(pod):
        return False
    return not (condition.restarts and restarts(pod) < condition.restarts)


def _statuses(pod: Json) -> list[Json]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def pod_reasons(pod: Json) -> set[str]:
    """Every reason a pod shows: its containers' waiting and terminated states (current and
    last), its conditions' (Unschedulable) and its own (Evicted)."""
    found = set()
    for container in _statuses(pod):
        for key in ("state", "lastState"):
            for state in ("waiting", "terminated"):
                reason = ((container.get(key) or {}).get(state) or {}).get("reason")
                if reason and (key == "state" or state == "terminated"):
                    found.add(str(reason))
    status = pod.get("status") or {}
    found |= {str(c["reason"]) for c in status.get("conditions") or [] if c.get("reason")}
    return found | ({str(status["reason"])} if status.get("reason") else set())


def restarts(pod: Json) -> int:
    return max((int(c.get("restartCount") or 0) for c in _statuses(pod)), default=0)


def _pod_seen(pod: Json) -> str:
    name = (pod.get("metadata") or {}).get("name", "?")
    phase = (pod.get("status") or {}).get("phase", "?")
    reasons = ", ".join(sorted(pod_reasons(pod))) or "no reasons"
    return f"{name} {phase} ({reasons}; restarts {restarts(pod)})"


def _checks(condition: WaitFor) -> str:
    parts = []
    if condition.reason:
        parts.append(f"reason {' or '.join(condition.reason)}")
    if condition.phase:
        parts.append(f"phase {condition.phase}")
    if condition.restarts:
        parts.append(f"{condition.restarts}+ restarts")
    return ", ".join(parts)


def describe(condition: WaitFor) -> str:
    """The condition in words, for the log and errors."""
    text = _checks(condition)
    if condition.selector:
        text = f"pods {condition.selector}" + (f" with {text}" if text else "")
    if condition.event:
        text += (" and " if text else "") + f"event {condition.event}"
    return text or "pods exist"


# -- kubectl ----------------------------------------------------------------------------------


class _Kubectl:
    def __init__(self, kubeconfig: str | None) -> None:
        self.prefix = [KUBECTL, *(["--kubeconfig", kubeconfig] if kubeconfig else [])]

    def run(self, *args: str, stdin: str | None = None, timeout: float = COMMAND_SECONDS) -> str:
        try:
            done = subprocess.run(
                [*self.prefix, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as error:
            raise LiveError(f"live scenarios need the `{KUBECTL}` binary on PATH") from error
        except subprocess.TimeoutExpired as error:
            raise LiveError(f"kubectl {' '.join(args[:4])} took over {timeout:.0f} s") from error
        if done.returncode != 0:
            raise LiveError(f"kubectl {' '.join(args[:4])} failed: {done.stderr.strip()}")
        return done.stdout

    def items(self, *args: str) -> list[Json]:
        items: list[Json] = json.loads(self.run("get", *args, "-o", "json")).get("items") or []
        return items


def _recreate(kubectl: _Kubectl, namespace: str, log: Log) -> None:
    """Create the namespace; one an earlier eval left (crashed) is deleted first, and one that
    an eval did not make is never touched."""
    found = kubectl.run("get", "namespace", namespace, "--ignore-not-found", "-o", "json").strip()
    if found:
        labels = json.loads(found).get("metadata", {}).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            raise LiveError(
                f"namespace {namespace} exists and was not made by punchingfist eval (no label "
                f"{MANAGED_BY_LABEL}={MANAGED_BY}): it is left alone; delete it yourself or "
                "change live.namespace"
            )
        log(f"namespace {namespace} is left over from an earlier run: deleting it first")
        kubectl.run("delete", "namespace", namespace, "--wait=true", timeout=GONE_SECONDS)
    kubectl.run(
        "apply",
        "-f",
        "-",
        stdin=json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                },
            }
        ),
    )


def manifest_text(folder: Path, manifest: str, environ: Mapping[str, str]) -> str:
    """The manifest with its `${EVAL_...}` placeholders replaced from `environ`."""
    text = (folder / manifest).read_text()
    missing = sorted({name for name in PLACEHOLDER.findall(text) if not environ.get(name)})
    if missing:
        raise LiveError(
            f"{folder / manifest} uses {', '.join('${' + m + '}' for m in missing)}: set "
            + ("it" if len(missing) == 1 else "them")
            + " in the environment (EVAL_IMAGE: an image your cluster can pull, with python3 "
            "and sh)"
        )
    return PLACEHOLDER.sub(lambda match: environ[match.group(1)], text)


def _observed(kubectl: _Kubectl, namespace: str, timeout: float) -> None:
    """Wait until the namespace's workloads controllers have seen their latest spec, so that
    the next manifest makes a new revision (`rollout history` shows both) instead of racing
    the controller to replace the first one unseen."""
    deadline = time.monotonic() + timeout
    while True:
        behind = [
            f"{item['kind']} {item['metadata']['name']}"
            for item in kubectl.items("deployments,statefulsets,daemonsets", "-n", namespace)
            if int((item.get("status") or {}).get("observedGeneration") or 0)
            < int(item["metadata"].get("generation") or 0)
        ]
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise LiveError(
                f"namespace {namespace}: the controllers never saw {', '.join(behind)} "
                f"within {timeout:.0f} s"
            )
        time.sleep(POLL_SECONDS / 4)


def _wait(kubectl: _Kubectl, scenario: str, live: Live, log: Log) -> None:
    start = time.monotonic()
    deadline = start + live.timeout_seconds
    while True:
        events = (
            kubectl.items("events", "-n", live.namespace) if any(c.event for c in live.wait) else []
        )
        pods: dict[str | None, list[Json]] = {}
        problems = []
        for index, condition in enumerate(live.wait):
            if condition.selector not in pods:
                selector = ["-l", condition.selector] if condition.selector else []
                pods[condition.selector] = kubectl.items("pods", "-n", live.namespace, *selector)
            why = unmet(condition, pods[condition.selector], events)
            if why is not None:
                problems.append(f"wait[{index}] ({describe(condition)}): {why}")
        if not problems:
            log(f"{scenario}: the fault is live after {time.monotonic() - start:.0f} s")
            return
        if time.monotonic() >= deadline:
            raise LiveError(
                f"{scenario}: the fault did not happen within live.timeout_seconds "
                f"({live.timeout_seconds} s) in namespace {live.namespace}: " + "; ".join(problems)
            )
        time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def prepared(scenario: Scenario, kubeconfig: str | None, log: Log) -> Iterator[dict[str, str]]:
    """Make the scenario's fault live, yield the tools' environment, delete its namespace."""
    live = scenario.live
    if live is None:
        raise LiveError(f"{scenario.name}: not a live scenario (it has no `live`)")
    kubectl = _Kubectl(kubeconfig)
    texts = [manifest_text(Path(scenario.path), m, os.environ) for m in live.manifests]
    _recreate(kubectl, live.namespace, log)
    log(f"{scenario.name}: namespace {live.namespace} created")
    try:
        for number, (manifest, text) in enumerate(zip(live.manifests, texts, strict=True)):
            if number:
                _observed(kubectl, live.namespace, live.timeout_seconds)
            kubectl.run("apply", "-n", live.namespace, "-f", "-", stdin=text)
            log(f"{scenario.name}: applied {manifest}")
        _wait(kubectl, scenario.name, live, log)
        yield {"KUBECONFIG": kubeconfig} if kubeconfig else {}
    finally:
        try:
            kubectl.run("delete", "namespace", live.namespace, "--ignore-not-found", "--wait=false")
            log(f"{scenario.name}: namespace {live.namespace} deleted")
        except LiveError as error:
            log(f"{scenario.name}: could not delete namespace {live.namespace}: {error}")
