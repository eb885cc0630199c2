"""Prometheus metrics of the server (prometheus-client), on its own registry.

With several server workers (`serve --workers N`) each process keeps its values in files of
one directory (prometheus-client's multiprocess mode, `use_multiprocess`), and `exposition`
adds up every worker's.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values
from prometheus_client.multiprocess import MultiProcessCollector

from punchingfist.runs.rules import SUPPRESSED_REASONS

_multiprocess_dir: str | None = None


def use_multiprocess(directory: str) -> None:
    """Keep the values of metrics made from now on in files under `directory`, shared by the
    processes forked afterwards. Call before the first `Metrics`."""
    global _multiprocess_dir
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    _values.ValueClass = _values.MultiProcessValue()  # type: ignore[no-untyped-call]
    _multiprocess_dir = directory


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.alerts_processed = Counter(
            "punchingfist_alerts_processed",
            "Alerts received by webhook Sources, by what happened to them "
            "(new, updated, resolved, filtered, rejected).",
            ["source", "status"],
            registry=registry,
        )
        self.resolution_seconds = Histogram(
            "punchingfist_alert_resolution_seconds",
            "Time from an alert's first receipt to its resolution.",
            buckets=(60, 300, 900, 1800, 3600, 7200, 21600, 86400),
            registry=registry,
        )
        self.request_seconds = Histogram(
            "punchingfist_webhook_request_duration_seconds",
            "Time to accept one webhook notification (store, correlate, queue).",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.batch_notifications = Histogram(
            "punchingfist_webhook_batch_notifications",
            "How many notifications were stored in one transaction with each notification "
            "(the intake writer's group commit).",
            buckets=(1, 2, 3, 5, 10, 20, 50),
            registry=registry,
        )
        self.runs_queued = Counter(
            "punchingfist_runs_queued",
            "Investigation runs written to the outbox, by workflow.",
            ["workflow"],
            registry=registry,
        )
        self.triage_seconds = Histogram(
            "punchingfist_alert_triage_seconds",
            "Time from an alert's receipt to its completed AI triage (first agent answer).",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800),
            registry=registry,
        )
        self.task_duration = Histogram(
            "punchingfist_task_duration_seconds",
            "Duration of workflow steps as reported by pf-runtime.",
            ["kind", "phase"],
            buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600),
            registry=registry,
        )
        self.llm_tokens = Counter(
            "punchingfist_llm_tokens",
            "LLM tokens spent by agent steps, by workflow, model and direction (input: the "
            "prompts, output: the completions).",
            ["workflow", "model", "direction"],
            registry=registry,
        )
        self.llm_cost_usd = Counter(
            "punchingfist_llm_cost_usd",
            "What agent steps' model calls cost in USD (OperatorConfig spec.llm.prices over the "
            "built-in list prices), by workflow and model.",
            ["workflow", "model"],
            registry=registry,
        )
        self.llm_budget_remaining_usd = Gauge(
            "punchingfist_llm_budget_remaining_usd",
            "USD left today (UTC) of the daily LLM budget (OperatorConfig "
            "spec.llm.dailyBudgetUsd); runs are refused at 0. +Inf without a budget.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.llm_budget_remaining_usd.set(float("inf"))
        self.runs_refused = Counter(
            "punchingfist_runs_refused",
            "Queued runs the dispatcher refused to start, by reason (daily_llm_budget).",
            ["reason"],
            registry=registry,
        )
        self.investigations_suppressed = Counter(
            "punchingfist_investigations_suppressed",
            "New firing alerts that started no investigation of their own, by reason: scope "
            "(they joined their group's or incident's run), cooldown (a run covered them within "
            "the Source's cooldown), run_limit (maxRunsPerNotification was reached).",
            ["reason"],
            registry=registry,
        )
        for reason in SUPPRESSED_REASONS:  # exposed at 0 before the first
            self.investigations_suppressed.labels(reason)
        self.sink_deliveries = Counter(
            "punchingfist_sink_deliveries",
            "Sink deliveries reported by the exit handler, by sink and outcome.",
            ["sink", "outcome"],
            registry=registry,
        )
        # Set from the database by whichever worker answers /metrics: the latest value counts.
        self.active_tasks = Gauge(
            "punchingfist_active_tasks",
            "Runs submitted to an executor and not finished yet.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.outbox_pending = Gauge(
            "punchingfist_outbox_pending",
            "Runs waiting in the outbox for an executor.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.runs_waiting = Gauge(
            "punchingfist_runs_waiting",
            "Runs the local executor holds until a slot frees (its parallel runs and "
            "OperatorConfig spec.concurrency); Argo keeps its own such runs Pending.",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def exposition(self) -> bytes:
        """The text format of every metric: this process's, or all workers' added up."""
        if _multiprocess_dir is None:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=_multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(combined)
