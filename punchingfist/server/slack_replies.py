"""Answers to Slack button clicks, where Slack shows them: the click's `response_url`.

Slack ignores the body of the HTTP answer to a `block_actions` interaction (it only needs the
200 within 3 s); a message that replaces the clicked one, or an ephemeral note to the user, is
posted to the `response_url` of the (signed) payload. `respond_later` posts the answer the
interactions endpoint gave, off the request path, and only to Slack's own host (or the host of
`SLACK_API_URL`, a test server or GovSlack): a URL elsewhere is not called. The URL is a
credential of its own (it can post in the channel for 30 minutes): it is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fastapi.responses import JSONResponse

log = logging.getLogger("punchingfist.slack")

SLACK_HOSTS = frozenset({("https", "hooks.slack.com")})
"""Where Slack's response URLs point."""
TIMEOUT_SECONDS = 5.0


def allowed(url: str) -> bool:
    """Whether `url` is Slack's (or the configured Slack API's) host."""
    parsed = urllib.parse.urlsplit(url)
    hosts = set(SLACK_HOSTS)
    if base := os.environ.get("SLACK_API_URL"):
        configured = urllib.parse.urlsplit(base)
        hosts.add((configured.scheme, configured.netloc))
    return (parsed.scheme, parsed.netloc) in hosts


def respond_later(payload: dict[str, Any], response: JSONResponse) -> threading.Thread | None:
    """Post the answer to a button click (`response`'s JSON, when it has a text) to the
    click's `response_url`, in a background thread (returned, for tests)."""
    url = payload.get("response_url")
    if payload.get("type") != "block_actions" or not isinstance(url, str) or not url:
        return None
    if response.status_code != 200:
        return None
    try:
        message = json.loads(bytes(response.body))
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return None
    if not allowed(url):
        log.warning("a Slack click's response_url is not Slack's host: its answer is not posted")
        return None
    thread = threading.Thread(target=_post, args=(url, message), name="slack-response", daemon=True)
    thread.start()
    return thread


def _post(url: str, message: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            answer.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "code", None) or type(error).__name__
        log.warning("posting the answer to a Slack click failed (%s)", reason)
