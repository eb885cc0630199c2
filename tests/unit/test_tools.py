"""Agent tools: curl's host and redirect checks, declared scripts and what each tool sees of
the environment. Real processes and real HTTP on loopback; kubectl's typed calls are in
test_kubectl_tool.py, against a real API server in tests/e2e."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from punchingfist.api.runspec import ToolSpec
from punchingfist.api.workflows import Tool, ToolParameter
from punchingfist.compiler import compile_workflow
from punchingfist.errors import CompileError
from punchingfist.runtime.agent.decisions import decision_model
from punchingfist.runtime.agent.toolbox import build_toolbox
from punchingfist.runtime.tools import curl, scripts
from tests.builders import make_workflow


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


POD = ToolParameter(name="pod", required=True, pattern=r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
NAMESPACE = ToolParameter(name="namespace", type="namespace")
LINES = ToolParameter(name="lines", type="integer", flag="--lines", minimum=1, maximum=500)
VERBOSE = ToolParameter(name="verbose", type="boolean", flag="--verbose")
MODE = ToolParameter(name="mode", enum=["brief", "full"], flag="--mode")
DEBUG = [POD, NAMESPACE, LINES, VERBOSE, MODE]


def script_call(parameters: list[ToolParameter], **values: Any) -> Any:
    return scripts.call_model("debug-pod", None, parameters).model_validate(
        {"tool": "debug-pod", **values}
    )


def test_a_script_gets_an_argv_built_from_its_declared_parameters() -> None:
    call = script_call(
        DEBUG, pod="my-app-pod-xyz", namespace="shop", lines=20, verbose=True, mode="full"
    )
    assert scripts.argv(DEBUG, call) == [
        "my-app-pod-xyz",
        "shop",
        "--lines=20",
        "--verbose",
        "--mode=full",
    ]
    assert scripts.argv(DEBUG, script_call(DEBUG, pod="p", verbose=False)) == ["p"]
    ok = scripts.run(["/bin/echo", "pod:"], DEBUG, call, timeout=5, env={})
    assert (
        ok.status == "ok"
        and ok.output == "pod: my-app-pod-xyz shop --lines=20 --verbose --mode=full\n"
    )
    assert ok.details["argv"][:3] == ["/bin/echo", "pod:", "my-app-pod-xyz"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "pod\n  Field required"),
        ({"pod": "-rf"}, "should match pattern"),
        ({"pod": "$(id)"}, "should match pattern"),
        ({"pod": "p", "namespace": "--all"}, "should match pattern"),
        ({"pod": "p", "lines": 0}, "greater than or equal to 1"),
        ({"pod": "p", "mode": "--x"}, "Input should be 'brief' or 'full'"),
        ({"pod": "p", "args": ["--kubeconfig=/x"]}, "Extra inputs are not permitted"),
        ({"pod": "p", "declared": []}, "Extra inputs are not permitted"),
    ],
)
def test_a_scripts_values_are_checked_before_anything_runs(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        script_call(DEBUG, **values)


def test_free_positional_strings_never_start_with_a_dash() -> None:
    free = [ToolParameter(name="target", required=True), ToolParameter(name="extra")]
    with pytest.raises(ValidationError, match="`target` may not start with '-'"):
        script_call(free, target="--output=/etc/x")
    with pytest.raises(ValidationError, match="one line of text"):
        script_call(free, target="a\nb")
    assert scripts.argv(free, script_call(free, target="a b", extra="$(id)")) == ["a b", "$(id)"]
    with pytest.raises(ValidationError, match="Extra inputs"):
        script_call([], target="x")  # no parameters: no arguments


def test_parameter_declarations_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs a `flag`"):
        ToolParameter(name="on", type="boolean")
    with pytest.raises(ValidationError, match="reserved"):
        ToolParameter(name="tool")
    with pytest.raises(ValidationError, match="not a regular expression"):
        ToolParameter(name="x", pattern="(")
    with pytest.raises(ValidationError, match="put required positional parameters first"):
        Tool(
            name="s",
            command="/x",
            parameters=[ToolParameter(name="a"), ToolParameter(name="b", required=True)],
        )
    with pytest.raises(ValidationError, match="never given to a tool"):
        Tool(name="s", command="/x", env=["LLM_API_KEY"])


def test_a_scripts_namespace_must_be_allowed_and_it_sees_only_its_env(tmp_path: Path) -> None:
    spec = ToolSpec(
        name="show-env",
        command=["/usr/bin/env"],
        env=["PROMETHEUS_TOKEN"],
        parameters=[ToolParameter(name="namespace", type="namespace")],
    )
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LLM_API_KEY": "sk-model",
        "PROMETHEUS_TOKEN": "prom",
        "SLACK_BOT_TOKEN": "xoxb",
        "PF_SPEC": "spec",
        "KUBECONFIG": "/k",
    }
    box = build_toolbox(
        [spec],
        environ=environ,
        approved=False,
        require_approval=[],
        allowed_namespaces=["shop"],
        render=str,
    )
    model = decision_model(box.builtin, box.scripts, False)
    decision = model.model_validate(
        {
            "thought": "t",
            "action": {
                "kind": "tool_calls",
                "calls": [{"tool": "show-env"}, {"tool": "show-env", "namespace": "payments"}],
            },
        }
    )
    (_, _, shown), (_, _, outside) = box.run_all(decision.action.calls)
    seen = dict(line.split("=", 1) for line in shown.output.splitlines())
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": "/k",
        "PROMETHEUS_TOKEN": "prom",
    }
    assert outside.status == "refused" and "outside" in (outside.error or "")


def test_scripts_run_as_argv_with_timeout() -> None:
    slow = scripts.run(["/bin/sleep", "10"], [], script_call([]), timeout=0.3, env={})
    assert slow.status == "timeout" and "stopped" in (slow.error or "")
    failed = scripts.run(
        ["/bin/sh", "-c", "echo boom >&2; exit 3"], [], script_call([]), timeout=5, env={}
    )
    assert failed.status == "error" and failed.error == "boom"


def test_built_in_tools_take_no_script_fields() -> None:
    tools = [{"name": "kubectl", "parameters": [{"name": "pod"}]}]
    workflow = make_workflow([{"name": "look", "type": "agent", "goal": "g", "tools": tools}])
    with pytest.raises(CompileError, match="built-in tool and takes no `parameters`") as caught:
        compile_workflow(workflow)
    assert caught.value.field == "spec.steps[0].tools[0].parameters"


def test_the_log_shows_the_argv_that_ran(capsys: pytest.CaptureFixture[str]) -> None:
    box = build_toolbox(
        [ToolSpec(name="kubectl")],
        environ={"KUBECONFIG": "/nonexistent"},
        approved=False,
        require_approval=[],
        allowed_namespaces=None,
        render=str,
    )
    model = decision_model(box.builtin, box.scripts, False)
    get = {
        "tool": "kubectl",
        "verb": "get",
        "resource": "pods",
        "namespace": "shop",
        "label_selector": "app=web",
    }
    decision = model.model_validate(
        {"thought": "t", "action": {"kind": "tool_calls", "calls": [get]}}
    )
    box.run_all(decision.action.calls)
    line = capsys.readouterr().out
    assert "🔧 [call-1] kubectl get --namespace=shop --selector=app=web -- pods -> error" in line
    assert box.audit[0].argv == [
        "kubectl",
        "get",
        "--namespace=shop",
        "--selector=app=web",
        "--",
        "pods",
    ]
