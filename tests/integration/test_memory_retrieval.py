"""Finding similar past incidents (#22), on SQLite (FTS5) and PostgreSQL (full-text search):
a confirmed incident comes back first for its new alert, a 'wrong' one never does, retrieval
abstains when nothing fits, and the API answers with scores and reasons."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.memory.retrieval import similar
from punchingfist.server import ServerState
from punchingfist.store import Alert, KnowledgeEntry, make_engine, session_factory, upgrade
from tests.memory_support import (
    alert_input,
    entry,
    evaluate,
    incident_id,
    load_corpus,
    store_corpus,
)

CORPUS = load_corpus()


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    """A store at the head revision holding the labelled corpus."""
    upgrade(database_url)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    with factory.begin() as session:
        store_corpus(session, CORPUS)
    yield factory
    engine.dispose()


def ask(sessions: sessionmaker[Session], alert: str, **options: Any) -> list[Any]:
    with sessions() as session:
        return similar(session, alert_input(CORPUS.alert(alert)), **options)


def test_a_confirmed_incident_comes_back_first_for_its_new_alert(
    sessions: sessionmaker[Session],
) -> None:
    first, *rest = ask(sessions, "new-oom-checkout")
    assert first.incident_id == incident_id("oom-checkout-limit")
    assert first.confirmed and first.verdict == "right"
    assert first.fix == "kubectl -n shop set resources deployment/checkout --limits=memory=1Gi"
    assert {"same alertname", "same namespace", "same service"} <= set(first.reasons)
    assert any(r.startswith("text: ") and "checkout" in r for r in first.reasons)
    assert 0 < first.score <= 1 and all(m.score <= first.score for m in rest)
    assert len(rest) <= 2


def test_a_wrong_entry_is_never_offered(sessions: sessionmaker[Session]) -> None:
    wrong = {incident_id(i["id"]) for i in CORPUS.incidents if i.get("verdict") == "wrong"}
    assert len(wrong) == 3
    for alert in CORPUS.alerts:
        matches = ask(sessions, alert["id"], limit=100, threshold=0.0)
        assert not {m.incident_id for m in matches} & wrong, alert["id"]
    # The mailer's only own entry is wrong: other bad-config crash loops are offered instead.
    names = [m.incident_id for m in ask(sessions, "new-mailer-config")]
    assert incident_id("crashloop-notify-config-wrong") not in names
    assert incident_id("crashloop-analytics-config") in names
    # A human judges the confirmed checkout answer wrong: it is not offered any more.
    with sessions.begin() as session:
        session.execute(
            update(KnowledgeEntry)
            .where(KnowledgeEntry.incident_id == incident_id("oom-checkout-limit"))
            .values(verdict="wrong", confirmed=False)
        )
    after = [m.incident_id for m in ask(sessions, "new-oom-checkout", limit=100, threshold=0.0)]
    assert incident_id("oom-checkout-limit") not in after


def test_confirmed_ranks_above_unconfirmed_at_equal_similarity(
    sessions: sessionmaker[Session],
) -> None:
    item = next(i for i in CORPUS.incidents if i["id"] == "kafka-lag-rebalance")
    twin = {**entry(item), "id": uuid.uuid4(), "incident_id": None, "confirmed": True}
    with sessions.begin() as session:
        session.add(KnowledgeEntry(**twin))
    alert = {
        "labels": {"alertname": "KafkaConsumerLagHigh", "namespace": "streaming"},
        "annotations": {"summary": "clickstream-sink consumer group in constant rebalancing"},
    }
    with sessions() as session:
        first, second, *_ = similar(session, alert, threshold=0.0)
    assert (first.entry_id, first.confirmed) == (twin["id"], True)
    assert second.incident_id == incident_id("kafka-lag-rebalance") and not second.confirmed
    assert first.score > second.score


def test_it_abstains_when_nothing_fits(sessions: sessionmaker[Session]) -> None:
    for alert in CORPUS.alerts:
        if not alert["expect"]:
            assert ask(sessions, alert["id"]) == [], alert["id"]
    # and offers the best it has once the threshold allows it
    assert ask(sessions, "none-clock-skew", threshold=0.0)


def test_the_index_follows_edits_and_deletes(sessions: sessionmaker[Session]) -> None:
    alert = {
        "labels": {"alertname": "ZookeeperQuorumLost", "namespace": "streaming"},
        "annotations": {"summary": "zookeeper quorum lost, ensemble leader election loops"},
    }
    with sessions() as session:
        assert similar(session, alert) == []
    target = incident_id("kafka-broker-disk")
    with sessions.begin() as session:
        session.execute(
            update(KnowledgeEntry)
            .where(KnowledgeEntry.incident_id == target)
            .values(resolution_notes="zookeeper quorum lost during leader election loops")
        )
    with sessions() as session:
        (match,) = similar(session, alert, limit=1)
    assert match.incident_id == target
    assert any("zookeeper" in r and "quorum" in r for r in match.reasons)
    with sessions.begin() as session:
        session.delete(session.scalars(select(KnowledgeEntry).filter_by(incident_id=target)).one())
    with sessions() as session:
        assert similar(session, alert) == []


def test_the_corpus_meets_the_goals(sessions: sessionmaker[Session]) -> None:
    kinds = {i["kind"] for i in CORPUS.incidents}
    assert len(CORPUS.incidents) >= 40 and len(kinds) >= 12 and len(CORPUS.alerts) >= 15
    with sessions() as session:
        figures = evaluate(session, CORPUS)
    assert figures.recall_at_3 >= 0.9, figures.misses
    assert figures.abstention >= 0.8, figures.misses


def test_the_api_ranks_similar_incidents_with_reasons(
    api_server: tuple[TestClient, ServerState, str],
) -> None:
    http, state, _ = api_server
    with state.sessions.begin() as session:
        store_corpus(session, CORPUS)
        for verdict, root_cause in (("right", "limit too low"), ("wrong", "a bad node")):
            session.add(
                KnowledgeEntry(
                    alert_name="PodCrashLooping",
                    labels={"alertname": "PodCrashLooping", "namespace": "production"},
                    namespace="production",
                    service="my-app",
                    severity="critical",
                    summary="my-app crash looping, restarted after OOMKilled (exit code 137)",
                    root_cause=root_cause,
                    fix="raised the memory limit of my-app",
                    outcome="fixed",
                    confirmed=verdict == "right",
                    verdict=verdict,
                )
            )
    with state.sessions() as session:
        (alert_id,) = session.scalars(select(Alert.id).where(Alert.alert_name == "PodCrashLooping"))
    path = f"/api/v1/alerts/{alert_id}/similar"
    answer = http.get(path)
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert items and all(i["verdict"] != "wrong" for i in items)
    first = items[0]
    assert (first["root_cause"], first["confirmed"]) == ("limit too low", True)
    assert {"same alertname", "same namespace", "same service", "same severity"} <= set(
        first["reasons"]
    )
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert len(http.get(path, params={"limit": 10, "threshold": 0}).json()["items"]) == 10
    assert http.get(path, headers={"Authorization": ""}).status_code == 401
    assert http.get(f"/api/v1/alerts/{uuid.uuid4()}/similar").status_code == 404
    assert http.get("/api/v1/alerts/not-a-uuid/similar").status_code == 404
