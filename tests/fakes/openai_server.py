"""A fake OpenAI-compatible server: real HTTP, `/v1/chat/completions`, scripted turns.

Each scripted turn is the object the model "answers" (a Decision as JSON). The server replies
the way the real API does for the request it got: a forced tool call in TOOLS mode (request has
`tools`), JSON content in JSON_SCHEMA mode (request has `response_format`). A turn
`{"http_status": 500}` answers that status instead, to exercise the client's retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.saas import send_json


class FakeOpenAI:
    def __init__(
        self,
        turns: Sequence[dict[str, Any]],
        host: str = "127.0.0.1",
        default: dict[str, Any] | None = None,
    ) -> None:
        """`host`: the address to listen on (a cluster's pod bridge, for step pods);
        `default`: the turn every request gets once `turns` are used up (runs in parallel)."""
        self.turns = list(turns)
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.received: list[float] = []
        """When each of `requests` arrived (`time.monotonic()`, as it began to be read)."""
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Keep the test output quiet."""

            def do_POST(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers.items()))
                    fake.received.append(arrived)
                    turn = fake.turns.pop(0) if fake.turns else fake.default
                if turn is None:
                    self._send(500, {"error": {"message": "the scenario has no more turns"}})
                elif "http_status" in turn:
                    failure = {"error": {"message": "scripted failure"}}
                    self._send(turn["http_status"], failure, {"retry-after-ms": "10"})
                else:
                    self._send(200, completion(body, turn))

            def _send(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                send_json(self, status, payload, headers or {})

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def completion(request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(answer)
    prompt_tokens = len(json.dumps(request.get("messages", []))) // 4
    message: dict[str, Any]
    if request.get("tools"):
        choice = request.get("tool_choice") or {}
        name = choice.get("function", {}).get("name") or request["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": arguments}
        finish = "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_764_150_000,
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(arguments) // 4,
            "total_tokens": prompt_tokens + len(arguments) // 4,
        },
    }


@contextmanager
def fake_openai(turns: Sequence[dict[str, Any]]) -> Iterator[FakeOpenAI]:
    with FakeOpenAI(turns) as server:
        yield server
