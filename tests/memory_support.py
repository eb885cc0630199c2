"""The labelled memory corpus (tests/fixtures/memory/incidents.yaml): load it, store it, ask it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from punchingfist.store import Incident, KnowledgeEntry

CORPUS = Path(__file__).parent / "fixtures" / "memory" / "incidents.yaml"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Corpus:
    incidents: list[dict[str, Any]]
    alerts: list[dict[str, Any]]

    def alert(self, name: str) -> dict[str, Any]:
        return next(a for a in self.alerts if a["id"] == name)


def load_corpus() -> Corpus:
    data = yaml.safe_load(CORPUS.read_text())
    return Corpus(incidents=data["incidents"], alerts=data["alerts"])


def incident_id(name: str) -> uuid.UUID:
    """The stored incident of the corpus incident `name`."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"pf-memory:{name}")


def entry(item: dict[str, Any], now: datetime = NOW) -> dict[str, Any]:
    """The knowledge_base row of a corpus incident (a dict, for inserts in bulk)."""
    labels = {
        "alertname": item["alertname"],
        "severity": item["severity"],
        "namespace": item["namespace"],
        "service": item["service"],
        **(item.get("labels") or {}),
    }
    when = now - timedelta(days=item["days_ago"])
    verdict = item.get("verdict")
    return {
        "id": uuid.uuid5(uuid.NAMESPACE_URL, f"pf-memory-entry:{item['id']}"),
        "incident_id": incident_id(item["id"]),
        "alert_name": item["alertname"],
        "fingerprint": None,
        "labels": labels,
        "root_cause": item["root_cause"],
        "fix": item["fix"],
        "outcome": item["outcome"],
        "confidence": 0.8,
        "summary": item["summary"],
        "severity": item["severity"],
        "namespace": item["namespace"],
        "service": item["service"],
        "confirmed": bool(item.get("confirmed")),
        "verdict": verdict,
        "confirmed_by": "oncall@example.com" if item.get("confirmed") or verdict else None,
        "confirmed_at": when + timedelta(hours=2) if item.get("confirmed") or verdict else None,
        "resolution_notes": item.get("notes"),
        "created_at": when,
        "updated_at": when,
    }


def store_corpus(session: Session, corpus: Corpus, now: datetime = NOW) -> None:
    """Each corpus incident as a resolved incident with its knowledge entry."""
    for item in corpus.incidents:
        when = now - timedelta(days=item["days_ago"])
        session.add(
            Incident(
                id=incident_id(item["id"]),
                title=f"{item['alertname']} in {item['namespace']}: {item['id']}",
                status="resolved",
                severity=item["severity"],
                created_at=when,
                resolved_at=when + timedelta(hours=1),
            )
        )
    session.flush()
    for item in corpus.incidents:
        session.add(KnowledgeEntry(**entry(item, now)))


def alert_input(alert: dict[str, Any]) -> dict[str, Any]:
    """A corpus alert as `retrieval.similar` takes it."""
    return {
        "labels": alert["labels"],
        "annotations": {"summary": alert["summary"], "description": alert["description"]},
    }


@dataclass(frozen=True)
class Figures:
    """How retrieval did on the corpus's alerts."""

    recall_at_1: float
    recall_at_3: float
    abstention: float
    answerable: int
    unanswerable: int
    misses: list[str]


def evaluate(
    session: Session, corpus: Corpus, copies: dict[uuid.UUID, str] | None = None
) -> Figures:
    """recall@1 and @3 on the alerts with a right match (the top 1 or 3 hold one of `expect`),
    and the share of the alerts without one on which retrieval abstained. `copies`: entry id ->
    the corpus incident a synthetic entry was made from (finding the copy counts)."""
    from punchingfist.memory.retrieval import similar

    names = {incident_id(item["id"]): item["id"] for item in corpus.incidents}
    copies = copies or {}
    first = top3 = abstained = answerable = 0
    misses = []
    for alert in corpus.alerts:
        found = [
            names.get(m.incident_id) or copies.get(m.entry_id)
            for m in similar(session, alert_input(alert))
        ]
        if not alert["expect"]:
            abstained += not found
            if found:
                misses.append(f"{alert['id']}: expected nothing, got {found}")
            continue
        answerable += 1
        first += bool(found) and found[0] in alert["expect"]
        top3 += any(name in alert["expect"] for name in found[:3])
        if not found or found[0] not in alert["expect"]:
            misses.append(f"{alert['id']}: expected {alert['expect'][0]}, got {found}")
    unanswerable = len(corpus.alerts) - answerable
    return Figures(
        recall_at_1=first / answerable,
        recall_at_3=top3 / answerable,
        abstention=abstained / unanswerable,
        answerable=answerable,
        unanswerable=unanswerable,
        misses=misses,
    )
