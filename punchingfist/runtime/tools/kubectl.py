"""The kubectl tool (D12): the runtime builds kubectl's argv from a typed `KubectlCall`.

The model never writes an argv. Each verb has its own allow-listed flags, every value goes
as `--flag=value` or after `--`, the namespace is always explicit and checked against the
step's allowed namespaces, and writes run only behind an approved approval gate. No flag we
build can name a file, URL, server, kubeconfig, token, identity, profile or cache path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from punchingfist.runtime.tools.base import ToolResult, refused, run_argv
from punchingfist.runtime.tools.kubectl_calls import ACTIONS, DEFAULT_TAIL, Amounts, KubectlCall

_SUBCOMMANDS = {"pod": "pod", "pods": "pod", "po": "pod", "node": "node", "nodes": "node"}
"""`kubectl top`'s subcommands, by the resource type the model named."""


@dataclass(frozen=True)
class KubectlPolicy:
    approved: bool = False
    """The step ran behind an approval gate that was approved: write actions allowed."""
    require_approval: frozenset[str] = frozenset()
    """Actions (or kubectl words such as `rollout`) that need the gate besides every write
    (a Workflow's `safety.requireApproval`)."""
    allowed_namespaces: frozenset[str] | None = None
    timeout: float = 30.0
    binary: str = "kubectl"


def argv(call: KubectlCall) -> list[str]:
    """kubectl's arguments for a valid call: the verb's words, our flags, then `--` and the
    positional values (which the patterns already keep from starting with `-`)."""
    words = list(ACTIONS[call.verb].words)
    flags = [f"--namespace={call.namespace}"]
    positional: list[str] = []
    if call.verb == "top":
        words.append(_SUBCOMMANDS[call.resource or "pod"])
    elif call.verb == "logs":
        positional = [f"{call.resource}/{call.name}" if call.resource else call.name or ""]
    elif call.verb != "events" and call.resource:
        positional = [call.resource]
    if call.name and call.verb not in ("logs", "events"):
        positional.append(call.name)
    if call.label_selector:
        flags.append(f"--selector={call.label_selector}")
    selectors = [f"involvedObject.name={call.name}"] if call.verb == "events" and call.name else []
    selectors += [call.field_selector] if call.field_selector else []
    if selectors:
        flags.append(f"--field-selector={','.join(selectors)}")
    flags += _verb_flags(call)
    positional = [value for value in positional if value]
    return [*words, *flags, *(["--", *positional] if positional else [])]


def _verb_flags(call: KubectlCall) -> list[str]:
    flags: list[str] = []
    if call.output:
        flags.append(f"--output={call.output}")
    if call.verb == "logs":
        flags += [f"--container={call.container}"] if call.container else []
        flags += ["--previous"] if call.previous else []
        flags += [f"--since={call.since}"] if call.since else []
        flags.append(f"--tail={call.tail or DEFAULT_TAIL}")
    elif call.verb == "events":
        flags.append("--sort-by=.lastTimestamp")
    elif call.verb == "rollout-status":
        flags.append("--watch=false")
    elif call.verb == "rollout-history" and call.revision:
        flags.append(f"--revision={call.revision}")
    elif call.verb == "rollout-undo" and call.revision:
        flags.append(f"--to-revision={call.revision}")
    elif call.verb == "scale":
        flags.append(f"--replicas={call.replicas}")
    elif call.verb == "delete":
        flags.append("--wait=false")
    elif call.verb == "set-resources":
        flags += [f"--containers={call.container}"] if call.container else []
        flags += [f"--limits={_amounts(call.limits)}"] if call.limits else []
        flags += [f"--requests={_amounts(call.requests)}"] if call.requests else []
    return flags


def _amounts(amounts: Amounts) -> str:
    given = (("cpu", amounts.cpu), ("memory", amounts.memory))
    return ",".join(f"{name}={value}" for name, value in given if value)


def check(call: KubectlCall, policy: KubectlPolicy) -> str | None:
    """Why the step's policy refuses this call, or None when it may run."""
    action = ACTIONS[call.verb]
    asked = {call.verb, *action.words}
    if (action.writes or asked & policy.require_approval) and not policy.approved:
        what = "changes the cluster" if action.writes else "is set to need approval"
        return (
            f"kubectl {call.verb} {what} and needs a step behind an approved approval gate; "
            "propose it as the `fix` of your final answer instead"
        )
    allowed = policy.allowed_namespaces
    if allowed is not None and call.namespace not in allowed:
        return (
            f"namespace {call.namespace!r} is outside this step's allowed namespaces "
            f"({', '.join(sorted(allowed))})"
        )
    return None


def run(call: KubectlCall, policy: KubectlPolicy, env: Mapping[str, str]) -> ToolResult:
    """Build the argv, check the policy, then run it; the result's details carry the argv."""
    command = [policy.binary, *argv(call)]
    shown = {"argv": ["kubectl", *command[1:]]}
    reason = check(call, policy)
    if reason is not None:
        return replace(refused(reason), details=shown)
    missing = no_cluster(env)
    if missing is not None:
        return ToolResult(status="error", error=missing, details=shown)
    result = run_argv(command, timeout=policy.timeout, env=env)
    return replace(result, details={**result.details, **shown})


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def no_cluster(env: Mapping[str, str]) -> str | None:
    """Why kubectl has no cluster to talk to (no current kubeconfig context and not inside a
    pod), or None. Embedded mode runs where there may be no cluster at all: the model is told
    so plainly instead of reading kubectl's connection-refused noise."""
    if env.get("KUBERNETES_SERVICE_HOST") and SERVICE_ACCOUNT_TOKEN.is_file():
        return None
    home = Path(env.get("HOME") or Path.home())
    paths = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    for path in paths or [str(home / ".kube" / "config")]:
        try:
            config = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(config, dict) and config.get("current-context"):
            return None
    where = "KUBECONFIG=" + ":".join(paths) if paths else f"{home / '.kube' / 'config'}"
    return (
        f"no cluster: there is no kubeconfig with a current context ({where}) and this is not "
        "running inside a cluster, so kubectl cannot answer; say so in your answer"
    )
