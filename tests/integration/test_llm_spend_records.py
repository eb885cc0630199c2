"""LLM spend on SQLite and PostgreSQL: a step's cost (and its partial answer, when its budget
was spent) recorded on the step, the run and the metrics; the daily budget: the dispatcher
starts queued runs while today's recorded spend is under it, then refuses them (recorded as
failed with the reason, counted, the remaining budget at 0) until it is raised or the day
turns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.runs.dispatching import RunSubmission, dispatch_pending
from punchingfist.runs.metrics import Metrics
from punchingfist.runs.recording import Recorder
from punchingfist.store import (
    OutboxEntry,
    RunStep,
    WorkflowRun,
    make_engine,
    session_factory,
    upgrade,
)

NOW = datetime.now(UTC)


def answer(cost: float, *, partial: bool = False) -> dict[str, Any]:
    """An agent step's result.json that cost `cost` USD."""
    result: dict[str, Any] = {"summary": "pods crash", "confidence": 0.4}
    if partial:
        result |= {"partial": True, "partial_reason": "the LLM budget was spent after 2 turns"}
    return {
        "kind": "agent",
        "success": True,
        "phase": "Succeeded",
        "model": "gpt-4o-mini",
        "result": result,
        "partial": partial,
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "cost_usd": cost},
    }


class Recording:
    """An executor that notes what it was asked to start."""

    name = "test"

    def __init__(self) -> None:
        self.started: list[str] = []

    def submit(self, run: RunSubmission) -> None:
        self.started.append(run.name)

    def resume(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no gates here")


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(database_url)
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def queue(sessions: sessionmaker[Session], name: str, created: datetime | None = None) -> None:
    with sessions.begin() as session:
        run = WorkflowRun(
            name=name,
            namespace="ops",
            workflow_name="wf",
            parameters={"event": {}, "source": "s", "fingerprint": ""},
            status="pending",
        )
        if created is not None:
            run.created_at = created
        session.add(run)
        session.add(OutboxEntry(run_name=name, payload={"namespace": "ops", "workflow": "wf"}))


def report(
    sessions: sessionmaker[Session], name: str, data: dict[str, Any], metrics: Metrics
) -> None:
    with sessions.begin() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None
        Recorder(session, metrics).report_step(run, "investigate", data, NOW)


def run_of(sessions: sessionmaker[Session], name: str) -> WorkflowRun:
    with sessions() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None
        return run


def test_a_partial_answer_and_its_cost_are_recorded(sessions: sessionmaker[Session]) -> None:
    metrics = Metrics(CollectorRegistry())
    queue(sessions, "wf-1")
    report(sessions, "wf-1", answer(0.02, partial=True), metrics)
    report(sessions, "wf-1", answer(0.03, partial=True), metrics)  # a retried report replaces
    with sessions() as session:
        run = WorkflowRun.named(session, "wf-1")
        assert run is not None and run.cost_usd == pytest.approx(0.03)
        assert run.tokens_total == 1200
        step = session.query(RunStep).one()
        assert step.cost_usd == pytest.approx(0.03) and step.phase == "Succeeded"
        assert step.result is not None and step.result["partial"] is True
        assert step.result["result"]["partial_reason"].endswith("after 2 turns")
    labels = {"workflow": "wf", "model": "gpt-4o-mini"}
    value = metrics.registry.get_sample_value
    assert value("punchingfist_llm_cost_usd_total", labels) == pytest.approx(0.03)
    assert value("punchingfist_llm_tokens_total", labels | {"direction": "input"}) == 1000
    assert value("punchingfist_llm_tokens_total", labels | {"direction": "output"}) == 200


def test_the_daily_budget_refuses_runs_once_spent(sessions: sessionmaker[Session]) -> None:
    metrics = Metrics(CollectorRegistry())
    executor = Recording()
    remaining = metrics.registry.get_sample_value

    def dispatch(budget: float | None) -> int:
        return dispatch_pending(sessions, executor, daily_budget_usd=budget, metrics=metrics)

    # Yesterday's spend does not count; today's first run spent $0.03 of $0.05.
    queue(sessions, "yesterday", created=NOW - timedelta(days=1, hours=1))
    report(sessions, "yesterday", answer(5.0), metrics)
    queue(sessions, "first")
    report(sessions, "first", answer(0.03), metrics)
    assert dispatch(0.05) == 2 and executor.started == ["yesterday", "first"]
    assert remaining("punchingfist_llm_budget_remaining_usd") == pytest.approx(0.02)

    queue(sessions, "second")
    assert dispatch(0.05) == 1
    report(sessions, "second", answer(0.02, partial=True), metrics)  # now $0.05 today

    queue(sessions, "third")
    assert dispatch(0.05) == 0 and "third" not in executor.started
    third = run_of(sessions, "third")
    assert third.status == "failed" and third.finished_at is not None
    assert third.error == (
        "refused: the daily LLM budget of $0.05 is spent ($0.05 today); raise OperatorConfig "
        "spec.llm.dailyBudgetUsd or wait until 00:00 UTC"
    )
    with sessions() as session:
        entry = session.query(OutboxEntry).filter_by(run_name="third").one()
        assert entry.status == "failed" and entry.last_error == third.error
    refused = {"reason": "daily_llm_budget"}
    assert remaining("punchingfist_runs_refused_total", refused) == 1
    assert remaining("punchingfist_llm_budget_remaining_usd") == 0

    # A raised budget starts the next run (a refused one stays refused).
    queue(sessions, "fourth")
    assert dispatch(1.0) == 1 and executor.started[-1] == "fourth"
    assert run_of(sessions, "third").status == "failed"
    assert remaining("punchingfist_llm_budget_remaining_usd") == pytest.approx(0.95)
    # Without a budget nothing is refused.
    queue(sessions, "fifth")
    assert dispatch(None) == 1 and remaining("punchingfist_runs_refused_total", refused) == 1
    assert remaining("punchingfist_llm_budget_remaining_usd") == float("inf")
