"""Run one sink task: check its condition, deliver, and turn the outcome into a record."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from punchingfist.api.runspec import SinkTask, TaskSpec
from punchingfist.api.sinks import SINK_SECRET_FIELDS
from punchingfist.errors import PunchingFistError
from punchingfist.runtime.context import BadTaskInput, build_context
from punchingfist.runtime.redaction import redact
from punchingfist.runtime.sinks.delivery import (
    Budget,
    Delivery,
    DeliveryFailed,
    Http,
    say,
    secret,
)
from punchingfist.runtime.sinks.findings import Findings, gather
from punchingfist.templating import compile_template


@dataclass(frozen=True)
class Sent:
    """What a sink type reports after the service accepted the delivery."""

    external_id: str | None = None
    link: str | None = None
    detail: str = ""
    http_status: int | None = None
    """The final HTTP status, when the sink did not use `SinkRun.http`."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SinkRun:
    """Everything one sink type needs: its config, the run's context and findings, clients."""

    task: SinkTask
    environ: Mapping[str, str]
    context: dict[str, Any]
    findings: Findings
    budget: Budget
    clients: list[Http] = field(default_factory=list)
    other_attempts: int = 0
    """Attempts made outside `Http` (slack-sdk counts its own)."""
    secrets: list[str] = field(default_factory=list)

    @property
    def config(self) -> Mapping[str, Any]:
        return self.task.config

    @property
    def resource(self) -> str:
        return f"Sink/{self.task.name}"

    def render(
        self,
        text: str,
        field: str = "spec.config.template",
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Render one of the sink's templates with the sandboxed dialect (D1), on the run's
        context or on `context` (e.g. the run's context with its values escaped)."""
        template = compile_template(text, resource=self.resource, field=field)
        try:
            return template.render(self.context if context is None else context)
        except PunchingFistError as error:
            raise _located(error, self.resource, field) from error

    def template(self, context: Mapping[str, Any] | None = None) -> str | None:
        """The sink's rendered `template`, when it has one."""
        text = self.config.get("template")
        return self.render(text, context=context) if isinstance(text, str) else None

    def secret(self, fix: str, preview: Mapping[str, Any] | None = None, text: str = "") -> str:
        """The sink's credential (from the variable the compiler named); never printed. When
        none arrived, the sink is not configured here: `NotConfigured`, with what it would
        have sent (`preview`, `text`)."""
        fields = SINK_SECRET_FIELDS.get(self.task.type)
        variable = self.task.secret_env or (fields[2] if fields else None)
        if not self.environ.get(variable or "", "").strip():
            raise NotConfigured(f"{variable or 'its credential'} is not set: {fix}", preview, text)
        value = secret(self.environ, variable, f"{self.resource}: {fix}")
        self.secrets.append(value)
        return value

    def endpoint(self, default: str, variable: str, service: str) -> str:
        """The service's base URL. A Sink that leaves `spec.config.endpoint` at `default`
        leaves it to the environment: `variable` when set, else `default` when its host
        resolves here (a Service of that name in the step's namespace); `NotConfigured`
        when it does not."""
        configured = str(self.config.get("endpoint") or default).rstrip("/")
        if configured != default.rstrip("/"):
            return configured
        chosen = self.environ.get(variable, "").strip().rstrip("/")
        if chosen:
            return chosen
        host = urlsplit(configured).hostname or ""
        try:
            socket.getaddrinfo(host, None)
        except (OSError, UnicodeError):
            raise NotConfigured(
                f"no {service}: the Sink leaves `spec.config.endpoint` at {default}, whose host "
                f"{host!r} does not resolve here; set `spec.config.endpoint` or {variable}"
            ) from None
        return configured

    def http(self, service: str) -> Http:
        client = Http(service=service, budget=self.budget, secrets=self.secrets)
        self.clients.append(client)
        return client

    @property
    def attempts(self) -> int:
        return sum(client.attempts for client in self.clients) + self.other_attempts

    @property
    def last_status(self) -> int | None:
        statuses = [c.last_status for c in self.clients if c.last_status is not None]
        return statuses[-1] if statuses else None


Deliver = Callable[[SinkRun], Sent]


def run_sink(spec: TaskSpec, environ: Mapping[str, str], kinds: Mapping[str, Deliver]) -> Delivery:
    """Deliver one sink; bad input (template, secret, config) raises, anything else is a record."""
    sink = spec.sink
    if sink is None:
        raise BadTaskInput("the sink task spec has no `sink`")
    deliver = kinds.get(sink.type)
    if deliver is None:
        raise BadTaskInput(f"Sink/{sink.name}: unknown sink type {sink.type!r}")
    started = time.monotonic()
    context = build_context(spec, environ)
    run = SinkRun(sink, environ, context, gather(context, environ), Budget.from_env(environ))
    if sink.condition is not None:
        field_name = "spec.sinks[].condition"
        template = compile_template(
            sink.condition, resource=f"Workflow/{spec.workflow}", field=field_name
        )
        if not template.is_true(context):
            return Delivery(
                sink.name,
                sink.type,
                "skipped",
                detail=f"condition {sink.condition.strip()} does not hold",
            )
    say(f"delivering sink {sink.name} ({sink.type})")
    try:
        sent = deliver(run)
    except NotConfigured as missing:
        if missing.text:
            say("\n".join(f"{PREVIEW_MARK} {line}" for line in missing.text.splitlines()))
        return Delivery(
            sink.name,
            sink.type,
            "skipped",
            detail=f"not configured: {missing}",
            attempts=run.attempts,
            preview=missing.preview,
        )
    except Skip as skip:
        return Delivery(sink.name, sink.type, "skipped", detail=str(skip), attempts=run.attempts)
    except DeliveryFailed as failed:
        return Delivery(
            sink.name,
            sink.type,
            "failed",
            http_status=failed.status,
            attempts=run.attempts,
            seconds=_since(started),
            error=redact(str(failed), run.secrets),
        )
    finally:
        for client in run.clients:
            client.close()
    status = sent.http_status if sent.http_status is not None else run.last_status
    return Delivery(
        sink.name,
        sink.type,
        "delivered",
        http_status=status,
        external_id=sent.external_id,
        link=sent.link,
        attempts=run.attempts,
        seconds=_since(started),
        detail=sent.detail,
        extra=sent.extra,
    )


class Skip(PunchingFistError):
    """The sink decided not to deliver (e.g. its trigger condition does not hold)."""


PREVIEW_MARK = "│"
"""Starts each line of what a sink that is not configured would have sent, in its log."""


class NotConfigured(Skip):
    """The sink has nothing to deliver to here (no credential, no service): not a failure.

    `preview` is the request it would have sent (written beside its record), `text` the same
    for a reader (printed in its log)."""

    def __init__(
        self, reason: str, preview: Mapping[str, Any] | None = None, text: str = ""
    ) -> None:
        super().__init__(reason)
        self.preview = dict(preview) if preview is not None else None
        self.text = text


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _located(error: PunchingFistError, resource: str, field: str) -> PunchingFistError:
    locate = getattr(error, "located", None)
    return locate(resource=resource, field=field) if callable(locate) else error
