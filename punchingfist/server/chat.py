"""Chat intake: Slack Events API mentions start the workflow of a `chat` Source.

`POST /slack/events` verifies Slack's signature (the signing secret of OperatorConfig
`spec.chat.slack.signingSecret`, as `/slack/interactions` does), answers the URL verification
challenge, and turns an `app_mention` into a run of every chat Source it matches, through the
same outbox as webhook runs. The message text is the run's data (`.source.data.chat.text`):
never a command, never a template. Slack retries an event it got no answer to; the event id
keys the run, so a retry queues nothing new.

`channel` of a Source is a channel id (`C0123ABCD`) or a name (`#ops`); a name is looked up
with `conversations.list`, which needs the bot token in SLACK_BOT_TOKEN (SLACK_API_URL
overrides the API base). Socket Mode is not supported: use the Events API.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from punchingfist.api import Source
from punchingfist.api.sources import ChatSource
from punchingfist.errors import NotSupportedYet
from punchingfist.runs.queueing import queue_run
from punchingfist.server.approvals import signed_slack_body
from punchingfist.server.requests import problem
from punchingfist.server.state import ServerState

log = logging.getLogger("punchingfist.chat")

MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
MAX_TEXT = 4000
CHANNELS_TTL = 300.0


class ChannelNames:
    """Slack channel id -> name, from `conversations.list` (cached for five minutes)."""

    def __init__(self, token: str | None, api_url: str | None = None) -> None:
        self.token, self.api_url = token, api_url
        self._names: dict[str, str] = {}
        self._loaded = -CHANNELS_TTL
        self._lock = threading.Lock()

    def name(self, channel_id: str) -> str | None:
        if not self.token:
            return None
        with self._lock:
            stale = time.monotonic() - self._loaded > CHANNELS_TTL
            if stale or channel_id not in self._names:
                self._load()
            return self._names.get(channel_id)

    def _load(self) -> None:
        from slack_sdk import WebClient
        from slack_sdk.errors import SlackApiError

        client = WebClient(token=self.token, base_url=self.api_url or WebClient.BASE_URL)
        names: dict[str, str] = {}
        cursor = None
        try:
            for _ in range(20):
                kinds = "public_channel,private_channel"
                page = client.conversations_list(cursor=cursor, limit=200, types=kinds)
                names |= {c["id"]: c["name"] for c in page.get("channels") or []}
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    break
        except (SlackApiError, OSError) as error:
            log.warning("cannot list Slack channels to match chat Sources: %s", error)
            return
        self._names, self._loaded = names, time.monotonic()


def router(state: ServerState) -> APIRouter:
    if os.environ.get("SLACK_APP_TOKEN"):
        raise NotSupportedYet(
            "Slack Socket Mode (SLACK_APP_TOKEN is set): use the Events API instead, with the "
            "Slack app's Request URL at https://<server>/slack/events, and unset SLACK_APP_TOKEN"
        )
    channels = ChannelNames(os.environ.get("SLACK_BOT_TOKEN"), os.environ.get("SLACK_API_URL"))
    routes = APIRouter()

    @routes.post("/slack/events", tags=["chat"])
    async def events(request: Request) -> JSONResponse:
        """Slack Events API: URL verification and `app_mention` events of chat Sources."""
        body = await signed_slack_body(state, request)
        if isinstance(body, JSONResponse):
            return body
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            return problem(400, "the body is not JSON")
        if not isinstance(data, dict):
            return problem(400, "the body is not a Slack event envelope")
        if data.get("type") == "url_verification":
            challenge = data.get("challenge")
            if not isinstance(challenge, str):
                return problem(400, "url_verification without a challenge")
            return JSONResponse({"challenge": challenge})
        event = data.get("event")
        if data.get("type") != "event_callback" or not isinstance(event, dict):
            return JSONResponse({"ok": True, "runs": []})
        if event.get("type") != "app_mention" or event.get("bot_id") or event.get("subtype"):
            return JSONResponse({"ok": True, "runs": []})  # bots never trigger runs (no loops)
        runs = []
        for source in _chat_sources(state):
            chat = _matching_chat(source, data, event, channels)
            if chat is None:
                continue
            key = f"slack/{data.get('event_id') or event.get('event_ts') or event.get('ts')}"
            payload = {"chat": chat, "context": dict(source.spec.context)}
            name, created = queue_run(
                state.sessions, source, payload, key, namespace=state.namespace
            )
            if created:
                state.metrics.runs_queued.labels(source.spec.trigger_workflow).inc()
                runs.append(name)
        if runs:
            state.wake.set()
        return JSONResponse({"ok": True, "runs": runs})

    return routes


def _chat_sources(state: ServerState) -> list[Source]:
    return [s for s in state.sources if isinstance(s.spec, ChatSource)]


def _matching_chat(
    source: Source, envelope: dict[str, Any], event: dict[str, Any], channels: ChannelNames
) -> dict[str, Any] | None:
    """The `chat` part of the run's event when the mention is for this Source, else None."""
    config = source.spec.config
    channel = str(event.get("channel") or "")
    if config.channel:
        wanted = config.channel.strip()
        if CHANNEL_ID.match(wanted):
            if channel != wanted:
                return None
        elif channels.name(channel) != wanted.lstrip("#"):
            return None
    raw = str(event.get("text") or "")[:MAX_TEXT]
    text = " ".join(MENTION.sub(" ", raw).split())
    command = None
    if config.trigger == "command":
        word, _, rest = text.partition(" ")
        if not config.command or word.lower() != config.command.lower():
            return None
        command, text = word, rest.strip()
    return {
        "platform": "slack",
        "text": text,
        "rawText": raw,
        "command": command,
        "user": str(event.get("user") or ""),
        "channel": channel,
        "ts": str(event.get("ts") or ""),
        "threadTs": str(event.get("thread_ts") or event.get("ts") or ""),
        "team": str(envelope.get("team_id") or ""),
        "eventId": str(envelope.get("event_id") or ""),
    }
