"""Fake Slack Web API, PagerDuty Events API v2 and Jira REST API v2 servers: real HTTP on
loopback, speaking each service's wire protocol (auth, status codes, body shapes), so
slack-sdk and httpx run for real. Each records the requests it got.

`fail_next(status, headers)` makes the next request answer that status instead (429 with
`Retry-After`, 500, 400 ...), to exercise retries.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arguments(self) -> dict[str, str]:
        """Web API arguments: query string and form body (Slack accepts both)."""
        form = self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        body = dict(urllib.parse.parse_qsl(self.body.decode())) if form else {}
        return self.query | body


def send_json(
    handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]
) -> None:
    """Answer `payload` as JSON with `status` and extra `headers`."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


class FakeService(ABC):
    """A threaded HTTP server that records requests and answers with `handle`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """`host`: the address to listen on (a cluster's pod bridge, for step pods)."""
        self.requests: list[Request] = []
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                """Keep the test output quiet."""

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = dict(urllib.parse.parse_qsl(url.query))
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(method, url.path, query, headers, body)
                with fake._lock:
                    fake.requests.append(request)
                    failure = fake._failures.pop(0) if fake._failures else None
                extra: dict[str, str] = {}
                if failure is not None:
                    status, extra = failure
                    payload: Any = {"error": f"scripted HTTP {status}"}
                else:
                    with fake._lock:
                        status, payload = fake.handle(request)
                send_json(self, status, payload, extra)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @abstractmethod
    def handle(self, request: Request) -> Answer:
        """The service's answer to one request (each fake speaks its own API)."""

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._failures.append((status, headers or {}))

    def __enter__(self) -> FakeService:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class FakeSlack(FakeService):
    """`chat.postMessage`, `conversations.list`, `conversations.history` of the Web API.

    Slack answers HTTP 200 with `{"ok": false, "error": ...}` for API errors; blocks are
    checked against Block Kit's published limits."""

    def __init__(self, token: str, channels: dict[str, str], host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.token = token
        self.channels = channels  # id -> name
        self.messages: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}
        method = request.path.removeprefix("/api/")
        if method == "chat.postMessage":
            return 200, self._post(request.json())
        if method == "conversations.list":
            items = [{"id": i, "name": n, "is_channel": True} for i, n in self.channels.items()]
            return 200, {"ok": True, "channels": items, "response_metadata": {"next_cursor": ""}}
        if method == "conversations.history":
            return 200, self._history(request.arguments())
        return 404, {"ok": False, "error": "unknown_method"}

    def _channel(self, given: str) -> str | None:
        if given in self.channels:
            return given
        names = {name: id_ for id_, name in self.channels.items()}
        return names.get(given.lstrip("#"))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(str(body.get("channel", "")))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        if not blocks_valid(body.get("blocks") or []):
            return {"ok": False, "error": "invalid_blocks"}
        thread = body.get("thread_ts")
        if thread is not None and not any(m["ts"] == thread for m in self.messages):
            return {"ok": False, "error": "thread_not_found"}
        ts = f"{time.time():.6f}"
        while any(m["ts"] == ts for m in self.messages):
            ts = f"{float(ts) + 0.000001:.6f}"
        message = {
            "type": "message",
            "ts": ts,
            "channel": channel,
            "text": body.get("text"),
            "blocks": body.get("blocks"),
            "thread_ts": thread,
            "metadata": body.get("metadata"),
        }
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _history(self, query: dict[str, str]) -> dict[str, Any]:
        channel = query.get("channel", "")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        metadata = query.get("include_all_metadata") in ("true", "1")
        top = [m for m in reversed(self.messages) if m["channel"] == channel and not m["thread_ts"]]
        shown = [{k: v for k, v in m.items() if k != "metadata" or metadata} for m in top]
        return {
            "ok": True,
            "messages": shown,
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }


def blocks_valid(blocks: list[dict[str, Any]]) -> bool:
    """Block Kit limits: 50 blocks; header 150 chars; section text 3000; button value 2000."""
    if len(blocks) > 50:
        return False
    for block in blocks:
        kind = block.get("type")
        if kind == "header" and len(block["text"]["text"]) > 150:
            return False
        if kind == "section":
            texts = [block["text"]] if "text" in block else block.get("fields", [])
            if not texts or any(
                len(t["text"]) > 3000 or t["type"] not in ("mrkdwn", "plain_text") for t in texts
            ):
                return False
        if kind == "actions":
            for element in block["elements"]:
                if element["type"] == "button" and len(element.get("value", "")) > 2000:
                    return False
        if kind not in ("header", "section", "actions", "context", "divider"):
            return False
    return True


class FakePagerDuty(FakeService):
    """`POST /v2/enqueue` of the Events API v2."""

    def __init__(self, routing_key: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.routing_key = routing_key
        self.events: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Answer:
        if request.path != "/v2/enqueue" or request.method != "POST":
            return 404, {"status": "not found"}
        event = request.json()
        errors = []
        if event.get("routing_key") != self.routing_key:
            errors.append("Invalid routing key")
        if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        if not event.get("dedup_key") and event.get("event_action") != "trigger":
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            for required in ("summary", "source", "severity"):
                if not payload.get(required):
                    errors.append(f"'payload.{required}' is missing or blank")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
            if len(payload.get("summary", "")) > 1024:
                errors.append("'payload.summary' is too long")
        if errors:
            return 400, {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
        self.events.append(event)
        dedup = event.get("dedup_key") or f"generated-{len(self.events)}"
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup}


class FakeJira(FakeService):
    """Issue search (JQL on project, labels, status category), create and comment (API v2).

    `cloud=False` serves only the classic `/search` (Jira Server / Data Center)."""

    def __init__(
        self, user: str, token: str, *, cloud: bool = True, host: str = "127.0.0.1"
    ) -> None:
        super().__init__(host)
        self.auth = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.cloud = cloud
        self.issues: list[dict[str, Any]] = []
        self.comments: dict[str, list[str]] = {}

    def handle(self, request: Request) -> Answer:
        if request.headers.get("authorization") != self.auth:
            return 401, {"errorMessages": ["You are not authenticated."]}
        path = request.path.removeprefix("/rest/api/2")
        if request.method == "GET" and (
            path == "/search" or (path == "/search/jql" and self.cloud)
        ):
            return 200, self._search(request.query.get("jql", ""))
        if request.method == "POST" and path == "/issue":
            return self._create(request.json().get("fields") or {})
        match = re.fullmatch(r"/issue/([A-Z]+-\d+)/comment", path)
        if request.method == "POST" and match:
            key = match.group(1)
            if not any(i["key"] == key for i in self.issues):
                return 404, {"errorMessages": ["Issue does not exist"]}
            self.comments.setdefault(key, []).append(request.json()["body"])
            return 201, {"id": str(10000 + len(self.comments[key])), "body": request.json()["body"]}
        return 404, {"errorMessages": [f"no route {request.method} {request.path}"]}

    def _search(self, jql: str) -> dict[str, Any]:
        project = re.search(r'project = "([^"]+)"', jql)
        label = re.search(r'labels = "([^"]+)"', jql)
        open_only = "statusCategory != Done" in jql
        found = [
            i
            for i in self.issues
            if (not project or i["project"] == project.group(1))
            and (not label or label.group(1) in i["labels"])
            and (not open_only or i["status"] != "Done")
        ]
        issues = [
            {"id": i["id"], "key": i["key"], "fields": {"status": {"name": i["status"]}}}
            for i in found
        ]
        return {"issues": issues[:1], "isLast": True}

    def _create(self, fields: dict[str, Any]) -> Answer:
        errors = {}
        if not (fields.get("project") or {}).get("key"):
            errors["project"] = "project is required"
        if not (fields.get("issuetype") or {}).get("name"):
            errors["issuetype"] = "issue type is required"
        summary = fields.get("summary") or ""
        if not summary or len(summary) > 255 or "\n" in summary:
            errors["summary"] = "Summary must be one line of at most 255 characters."
        if any(" " in label for label in fields.get("labels") or []):
            errors["labels"] = "The label must not contain spaces."
        if errors:
            return 400, {"errorMessages": [], "errors": errors}
        number = len(self.issues) + 1
        key = f"{fields['project']['key']}-{number}"
        issue = {
            "id": str(10000 + number),
            "key": key,
            "project": fields["project"]["key"],
            "labels": list(fields.get("labels") or []),
            "status": "Open",
            "fields": fields,
        }
        self.issues.append(issue)
        return 201, {"id": issue["id"], "key": key, "self": f"{self.url}/rest/api/2/issue/{key}"}
