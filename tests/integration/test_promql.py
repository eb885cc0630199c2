"""The promql tool and the runtime image's `promql` script against a real Prometheus."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from punchingfist.runtime.tools.promql import PromqlSettings, run

SCRIPT = Path(__file__).resolve().parents[2] / "runtime-image" / "bin" / "promql"


def test_instant_query(prometheus: str) -> None:
    result = run(PromqlSettings(prometheus), 'up{job="self"}')
    assert result.status == "ok", result.error
    assert result.output.startswith('up{instance="127.0.0.1:')
    assert result.output.endswith(" 1")


def test_range_query_is_summarised(prometheus: str) -> None:
    result = run(PromqlSettings(prometheus), "up", range_minutes=5, step_seconds=1)
    assert result.status == "ok", result.error
    assert "->" in result.output and "points)" in result.output


def test_no_match_and_bad_query(prometheus: str) -> None:
    assert run(PromqlSettings(prometheus), 'up{job="nothing"}').output == "no series matched"
    bad = run(PromqlSettings(prometheus), "rate(up[5m")
    assert bad.status == "error"
    assert "Prometheus rejected the query (400)" in (bad.error or "")


def test_unreachable_prometheus_is_a_result_not_an_exception() -> None:
    result = run(PromqlSettings("http://127.0.0.1:9", timeout=2), "up")
    assert result.status == "error" and "unreachable" in (result.error or "")


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        _Recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_bearer_token_is_sent(recorder: str) -> None:
    assert run(PromqlSettings(recorder, token="s3cret"), "up").status == "ok"
    assert _Recorder.seen[0]["authorization"] == "Bearer s3cret"


def script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], **env},
    )


def test_promql_script_instant_and_range(prometheus: str) -> None:
    instant = script('up{job="self"}', PROMETHEUS_URL=prometheus)
    assert instant.returncode == 0, instant.stderr
    assert instant.stdout.startswith('up{instance="127.0.0.1:')
    # 1, or 0 when a scrape timed out on a loaded machine: one line, the sample's value
    assert instant.stdout.endswith((" 1\n", " 0\n")) and instant.stdout.count("\n") == 1
    # A freshly started Prometheus on a loaded machine may not answer ranges yet: ask again.
    deadline = time.monotonic() + 30
    while True:
        ranged = script("up", "5", "1", PROMETHEUS_URL=prometheus)
        assert ranged.returncode == 0, ranged.stderr
        if "->" in ranged.stdout or time.monotonic() > deadline:
            break
        assert ranged.stdout == "no series matched\n"  # never silence
        time.sleep(1)
    assert "->" in ranged.stdout and "points)" in ranged.stdout
    empty = script('up{job="nothing"}', "5", "1", PROMETHEUS_URL=prometheus)
    assert empty.returncode == 0 and empty.stdout == "no series matched\n"


def test_promql_script_errors(prometheus: str) -> None:
    bad = script("rate(up[5m", PROMETHEUS_URL=prometheus)
    assert bad.returncode == 1 and bad.stderr.startswith("promql: ")
    assert "parse error" in bad.stderr
    down = script("up", PROMETHEUS_URL="http://127.0.0.1:9")
    assert down.returncode == 1 and "unreachable" in down.stderr
    assert script().returncode == 2


def test_promql_script_sends_the_token_without_showing_it(recorder: str) -> None:
    result = script("up", PROMETHEUS_URL=recorder, PROMETHEUS_TOKEN="s3cret")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no series matched\n"
    assert _Recorder.seen[0]["authorization"] == "Bearer s3cret"
