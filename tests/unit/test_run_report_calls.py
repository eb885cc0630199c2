"""A tool call's line in the local run's report names the tool once."""

from __future__ import annotations

from punchingfist.runs.report import _call


def test_kubectl_s_argv_is_shown_as_run_and_other_tools_by_what_they_asked() -> None:
    kubectl = {
        "tool": "kubectl",
        "call": {"verb": "get"},
        "argv": ["kubectl", "get", "--namespace=shop", "--", "pods"],
        "status": "ok",
    }
    assert _call(kubectl) == "kubectl get --namespace=shop -- pods -> ok"
    script = {
        "tool": "debug-pod",
        "argv": ["/bin/debug.sh", "web"],
        "status": "error",
        "error": "x",
    }
    assert _call(script) == "debug-pod /bin/debug.sh web -> error: x"
    promql = {"tool": "promql", "call": {"query": "up"}, "status": "ok"}
    assert _call(promql) == "promql up -> ok"
