"""The kubectl tool (D9): argv only, read verbs by default, writes only behind an approved gate.

Secrets are refused in every spelling (`secret`, `secrets`, `secrets.v1`, `secret/x`,
`-o jsonpath` tricks on `all` …) before anything reaches the API server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from punchingfist.runtime.tools.base import ToolResult, refused, run_argv

READ_VERBS = frozenset(
    {"get", "describe", "logs", "top", "events", "explain", "api-resources", "api-versions",
     "version", "cluster-info"}
)  # fmt: skip
READ_SUBVERBS = {"rollout": {"history", "status"}, "auth": {"can-i", "whoami"}}
WRITE_VERBS = frozenset(
    {"delete", "patch", "scale", "apply", "create", "replace", "edit", "set", "label",
     "annotate", "cordon", "uncordon", "drain", "taint", "exec", "cp", "run", "expose",
     "autoscale", "attach", "port-forward", "debug", "rollout"}
)  # fmt: skip
WRITE_SUBVERBS = {"rollout": {"restart", "undo", "pause", "resume"}}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SELECTOR = re.compile(r"^[A-Za-z0-9=!,._-]+$")
"""A label or field selector value, e.g. `involvedObject.name=my-pod` (argv, never a shell)."""
_SECRET = re.compile(r"(^|[,/])secrets?($|[.,/])", re.IGNORECASE)
# Flags that would change who we are or where we talk to: never from the model.
_FORBIDDEN_FLAGS = ("--kubeconfig", "--context", "--cluster", "--user", "--token", "--as",
                    "--as-group", "--server", "-s", "--certificate-authority",
                    "--client-certificate", "--client-key", "--insecure-skip-tls-verify",
                    "--raw", "--username", "--password")  # fmt: skip


@dataclass(frozen=True)
class KubectlPolicy:
    approved: bool = False
    """The step ran behind an approval gate that was approved: write verbs allowed."""
    require_approval: frozenset[str] = frozenset()
    """Verbs that need the gate besides every write (a Workflow's `safety.requireApproval`)."""
    allowed_namespaces: frozenset[str] | None = None
    timeout: float = 30.0
    binary: str = "kubectl"


def check(args: Sequence[str], policy: KubectlPolicy) -> str | None:
    """Why this call is refused, or None when it may run."""
    if not args:
        return "give kubectl arguments, e.g. ['get', 'pods', '-n', 'production']"
    if any(not isinstance(arg, str) or "\n" in arg or "\x00" in arg for arg in args):
        return "arguments must be single-line strings"
    verb = args[0]
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _FORBIDDEN_FLAGS:
            return f"flag {flag} is not allowed: the tool talks to its own cluster as itself"
        if _SECRET.search(arg) and not arg.startswith("-"):
            return "reading Secrets is never allowed"
    if any(arg.lower() in ("all", "*") for arg in args[1:]) and verb not in ("api-resources",):
        return "`all` would include Secrets; name the resource types you need"
    sub = args[1] if len(args) > 1 else ""
    is_read = verb in READ_VERBS or sub in READ_SUBVERBS.get(verb, set())
    if not is_read and verb not in WRITE_VERBS and verb not in READ_SUBVERBS:
        return f"unknown kubectl verb {verb!r}"
    # Every write needs the gate; a Workflow's `safety.requireApproval` can add read verbs too.
    gated = not is_read or verb in policy.require_approval
    if gated and not policy.approved:
        what = "changes the cluster" if not is_read else "is set to need approval"
        return (
            f"`kubectl {verb}` {what} and needs a step behind an approved approval gate; "
            "recommend it as `fix_command` in your final answer instead"
        )
    namespace = _namespace(args)
    if namespace is not None:
        if not _NAME.match(namespace):
            return f"{namespace!r} is not a valid namespace name"
        if policy.allowed_namespaces is not None and namespace not in policy.allowed_namespaces:
            return f"namespace {namespace!r} is outside this step's allowed namespaces"
    everywhere = "-A" in args or "--all-namespaces" in args
    if everywhere and policy.allowed_namespaces is not None:
        return "all namespaces is outside this step's allowed namespaces"
    for arg in args[1:]:
        if arg.startswith("-"):
            continue
        for part in re.split(r"[/,]", arg):
            if part and not _NAME.match(part.lower()) and not _SELECTOR.match(part):
                return f"{arg!r} is not a valid resource type or name"
    return None


def _namespace(args: Sequence[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg in ("-n", "--namespace") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--namespace=") or arg.startswith("-n="):
            return arg.split("=", 1)[1]
    return None


def run(args: Sequence[str], policy: KubectlPolicy, env: Mapping[str, str]) -> ToolResult:
    reason = check(args, policy)
    if reason is not None:
        return refused(reason)
    missing = no_cluster(env)
    if missing is not None:
        return ToolResult(status="error", error=missing)
    return run_argv([policy.binary, *args], timeout=policy.timeout, env=env)


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
