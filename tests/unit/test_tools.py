"""Agent tools: kubectl's refusals, curl's host and redirect checks, scripts. Real processes and
real HTTP on loopback; the kubectl tests against a real API server are in tests/e2e."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from punchingfist.runtime.tools import curl, kubectl, scripts
from punchingfist.runtime.tools.kubectl import KubectlPolicy

READ_ONLY = KubectlPolicy()
APPROVED = KubectlPolicy(approved=True)


@pytest.mark.parametrize(
    "args",
    [
        ["get", "pods", "-n", "production"],
        ["describe", "pod", "my-app-pod-xyz", "-n", "production"],
        ["logs", "my-app-pod-xyz", "--previous", "--tail=200"],
        ["logs", "-l", "app=payment-service", "--tail", "200"],
        ["top", "pods", "-n", "shop"],
        ["get", "events", "-n", "shop", "--sort-by=.lastTimestamp"],
        ["rollout", "history", "deployment/my-app"],
        ["rollout", "status", "deployment/my-app", "-n", "production"],
        ["auth", "can-i", "delete", "pods"],
        ["explain", "deployment.spec"],
        ["api-resources"],
        ["get", "deployments.apps", "-o", "wide"],
        ["get", "events", "-n", "production", "--field-selector",
         "involvedObject.name=my-app-pod-xyz"],
    ],
)  # fmt: skip
def test_read_verbs_are_allowed(args: list[str]) -> None:
    assert kubectl.check(args, READ_ONLY) is None


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["delete", "namespace", "payments"], "approved approval gate"),
        (["patch", "svc", "x", "-p", "{}"], "approved approval gate"),
        (["scale", "deploy/x", "--replicas=0"], "approved approval gate"),
        (["rollout", "restart", "deploy/x"], "approved approval gate"),
        (["exec", "pod-x", "--", "sh"], "approved approval gate"),
        (["label", "pod", "x", "a=b"], "approved approval gate"),
        (["get", "secrets"], "Secrets"),
        (["get", "secret", "db-password", "-o", "yaml"], "Secrets"),
        (["get", "SECRETS.v1.", "-A"], "Secrets"),
        (["describe", "secret/db"], "Secrets"),
        (["get", "pods,secrets"], "Secrets"),
        (["get", "all", "-n", "x"], "`all`"),
        (["get", "pods", "--kubeconfig=/tmp/other"], "--kubeconfig"),
        (["get", "pods", "--as", "system:admin"], "--as"),
        (["get", "pods", "-n", "Bad_NS"], "not a valid namespace"),
        (["get", "pods", "x;rm -rf /"], "not a valid"),
        (["frobnicate"], "unknown kubectl verb"),
        ([], "give kubectl arguments"),
    ],
)
def test_refusals(args: list[str], reason: str) -> None:
    assert reason in (kubectl.check(args, READ_ONLY) or "")


def test_writes_only_behind_an_approved_gate_and_never_secrets() -> None:
    assert kubectl.check(["delete", "pod", "x", "-n", "prod"], APPROVED) is None
    assert kubectl.check(["rollout", "restart", "deploy/x"], APPROVED) is None
    assert "Secrets" in (kubectl.check(["delete", "secret", "x"], APPROVED) or "")


def test_allowed_namespaces() -> None:
    policy = KubectlPolicy(allowed_namespaces=frozenset({"shop"}))
    assert kubectl.check(["get", "pods", "-n", "shop"], policy) is None
    assert "outside" in (kubectl.check(["get", "pods", "-n", "payments"], policy) or "")
    assert "outside" in (kubectl.check(["get", "pods", "-A"], policy) or "")


def test_a_refused_call_runs_nothing(tmp_path: Path) -> None:
    policy = KubectlPolicy(binary="/nonexistent/kubectl")
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: lab\n")
    env = {"KUBECONFIG": str(config)}
    result = kubectl.run(["delete", "ns", "x"], policy, env)
    assert result.status == "refused"  # had it tried to run, it would say "cannot run"
    assert kubectl.run(["get", "pods"], policy, env).error == (
        "cannot run /nonexistent/kubectl: No such file or directory"
    )


def test_without_a_cluster_kubectl_says_so(tmp_path: Path) -> None:
    policy = KubectlPolicy(binary="/nonexistent/kubectl")
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")  # no current context
    for env in ({"HOME": str(tmp_path)}, {"KUBECONFIG": f"{tmp_path}/missing:{empty}"}):
        result = kubectl.run(["get", "pods"], policy, env)
        assert result.status == "error" and (result.error or "").startswith("no cluster:"), env
    assert kubectl.run(["delete", "ns", "x"], policy, {}).status == "refused"  # checks first


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        routes = {
            "/health": (200, b"ok"),
            "/hop": (302, b""),
            "/away": (302, b""),
            "/big": (200, b"x" * 400_000),
            "/missing": (404, b"not here"),
        }
        status, body = routes.get(self.path, (404, b""))
        self.send_response(status)
        if self.path == "/hop":
            self.send_header("Location", "/health")
        if self.path == "/away":
            self.send_header("Location", "http://evil.example:8080/steal")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


ALLOW_LOCAL = curl.CurlPolicy(allowed_domains=("127.0.0.1",), timeout=5)


def test_curl_get_on_an_allowed_host(site: str) -> None:
    result = curl.run(f"{site}/health", ALLOW_LOCAL)
    assert result.status == "ok" and result.output.startswith("HTTP 200")
    assert result.output.endswith("ok")


def test_curl_follows_redirects_on_allowed_hosts_only(site: str) -> None:
    hop = curl.run(f"{site}/hop", ALLOW_LOCAL)
    assert hop.status == "ok" and hop.details["redirects"] == [f"{site}/health"]
    away = curl.run(f"{site}/away", ALLOW_LOCAL)
    assert away.status == "refused"
    assert "redirect to http://evil.example:8080/steal refused" in (away.error or "")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://10.0.0.1/", "not in the allowed domains"),
        ("file:///etc/passwd", "only http and https"),
        ("http://user:pw@127.0.0.1/", "credentials"),
    ],
)
def test_curl_refusals(url: str, reason: str) -> None:
    result = curl.run(url, ALLOW_LOCAL)
    assert result.status == "refused" and reason in (result.error or "")
    assert curl.run("http://127.0.0.1/", ALLOW_LOCAL, method="POST").status == "refused"
    assert "none are configured" in (curl.run("http://x/", curl.CurlPolicy()).error or "")


def test_curl_caps_size_and_reports_http_errors(site: str) -> None:
    big = curl.run(f"{site}/big", ALLOW_LOCAL)
    assert big.truncated and "[... truncated:" in big.output
    missing = curl.run(f"{site}/missing", ALLOW_LOCAL)
    assert missing.status == "error" and missing.error == "HTTP 404 Not Found"
    head = curl.run(f"{site}/health", ALLOW_LOCAL, method="HEAD")
    assert head.status == "ok" and head.output.startswith("HTTP 200")


def test_scripts_run_as_argv_with_timeout() -> None:
    ok = scripts.run(["/bin/echo", "pod:"], ["$(id)", "a b"], timeout=5, env={})
    assert ok.status == "ok" and ok.output == "pod: $(id) a b\n"
    slow = scripts.run(["/bin/sleep"], ["10"], timeout=0.3, env={})
    assert slow.status == "timeout" and "stopped" in (slow.error or "")
    assert scripts.run(["/bin/echo"], ["a\nb"], timeout=5, env={}).status == "refused"
    failed = scripts.run(["/bin/sh", "-c", "echo boom >&2; exit 3"], [], timeout=5, env={})
    assert failed.status == "error" and failed.error == "boom"


def test_require_approval_can_add_read_verbs() -> None:
    policy = KubectlPolicy(require_approval=frozenset({"logs"}))
    assert "approval gate" in (kubectl.check(["logs", "pod-x"], policy) or "")
    assert kubectl.check(["get", "pods"], policy) is None
