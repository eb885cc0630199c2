"""Finding the past incidents most like a new alert, without any model (#22).

Candidates come from the indexes only, so a lookup stays bounded at 100k entries: the
full-text index on what an entry says (PostgreSQL `to_tsvector('english', ...)` with GIN, ranked
by `ts_rank`; SQLite FTS5, ranked by `bm25`), searched for the alert's uncommon words (held by at
most `COMMON` entries: PostgreSQL's index statistics, SQLite a bounded count), and the indexed
columns `alert_name` and `service` (confirmed, then recent, first). Each candidate is then
scored in Python:

    structured = 0.50·[same alertname] + 0.20·[same namespace]
               + 0.20·[same service/workload] + 0.10·[same severity]
    coverage   = share of the alert's words found in the entry's text (stemmed)
    rank       = the full-text rank divided by the best rank among the candidates (0 if the
                 full-text search did not return the entry)
    lexical    = coverage · (0.5 + 0.5·rank)
    similarity = 0.4·structured + 0.6·lexical
    score      = 0.9·similarity + 0.1·[confirmed by a human]

Entries a human judged wrong are never returned; when the best score is below `threshold`
(default 0.4) nothing is (it abstains rather than offer noise).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from punchingfist.memory.remember import SERVICE_LABELS
from punchingfist.store.models import DOCUMENT_FIELDS, DOCUMENT_TEXT, Alert, KnowledgeEntry

THRESHOLD = 0.4
CANDIDATES = 30
"""How many entries each index lookup may return (the candidates scored in Python)."""
COMMON = 200
"""A word more than this many entries hold does not find candidates (it still scores)."""
SCANNED = 150
"""PostgreSQL: at most this many full-text hits are ranked (confirmed, then recent, first)."""
STRUCTURED = {"alertname": 0.50, "namespace": 0.20, "service": 0.20, "severity": 0.10}
LEXICAL_SHARE = 0.6
CONFIRMED_BOOST = 0.1
_MAX_TERMS = 24
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_STOP = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "for", "from", "has"),
        *("have", "in", "into", "is", "it", "its", "of", "on", "or", "than", "that", "the"),
        *("their", "then", "there", "these", "this", "to", "was", "were", "when", "which"),
        *("while", "will", "with", "within", "not", "no", "more", "less", "over", "under"),
        *("after", "before", "during", "per", "last", "minutes", "minute", "hours", "hour"),
        *("seconds", "alert", "alerts", "firing", "fired", "pod", "pods", "container"),
        *("containers", "namespace", "cluster", "kubernetes", "kube", "instance", "value"),
        *("current", "currently"),
    }
)
_IGNORED_LABELS = frozenset(
    {"alertname", "severity", "namespace", "pod", "instance", "job", "endpoint", "prometheus"}
)


@dataclass(frozen=True)
class Match:
    """A past incident offered for a new alert, with why."""

    entry_id: uuid.UUID
    incident_id: uuid.UUID | None
    score: float
    reasons: list[str]
    confirmed: bool
    verdict: str | None
    when: datetime
    alert_name: str
    summary: str | None
    root_cause: str | None
    fix: str | None
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "entry_id": str(self.entry_id),
            "incident_id": str(self.incident_id) if self.incident_id else None,
            "score": self.score,
            "reasons": self.reasons,
            "confirmed": self.confirmed,
            "verdict": self.verdict,
            "when": self.when.isoformat(),
            "alert_name": self.alert_name,
            "summary": self.summary,
            "root_cause": self.root_cause,
            "fix": self.fix,
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class _Query:
    alert_name: str
    namespace: str | None
    service: str | None
    severity: str | None
    words: dict[str, str]
    """Stem -> the word as the alert wrote it."""


def workload(labels: Mapping[str, Any]) -> str | None:
    """The alert's workload as a knowledge entry records it (`remember.SERVICE_LABELS`)."""
    for name in SERVICE_LABELS:
        if labels.get(name):
            return str(labels[name])[:253]
    return None


def alert_of(alert: Alert) -> dict[str, Any]:
    """A stored alert as `similar` takes it."""
    labels = {"alertname": alert.alert_name, "severity": alert.severity, **(alert.labels or {})}
    return {
        "labels": labels,
        "annotations": alert.annotations or {},
        "summary": alert.summary,
        "description": alert.description,
    }


def similar(
    session: Session, alert: Mapping[str, Any], *, limit: int = 3, threshold: float = THRESHOLD
) -> list[Match]:
    """The past incidents most like `alert` ({labels, annotations, summary?, description?}),
    best first; [] when none scores `threshold` or more."""
    query = _query(alert)
    ranks = _full_text(session, query)
    ids = set(ranks)
    usable = or_(KnowledgeEntry.verdict.is_(None), KnowledgeEntry.verdict != "wrong")
    structured = [KnowledgeEntry.alert_name == query.alert_name]
    if query.service:
        structured.append(KnowledgeEntry.service == query.service)
    for condition in structured:  # the same alert or workload, even with other words
        ids.update(
            session.scalars(
                select(KnowledgeEntry.id)
                .where(condition, usable)
                .order_by(KnowledgeEntry.confirmed.desc(), KnowledgeEntry.created_at.desc())
                .limit(CANDIDATES)
            )
        )
    if not ids:
        return []
    best_rank = max(ranks.values(), default=0.0) or 1.0
    entries = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.id.in_(ids), usable))
    scored = [_score(query, entry, ranks.get(entry.id, 0.0) / best_rank) for entry in entries]
    scored.sort(key=lambda m: (m.score, m.confirmed, m.when), reverse=True)
    if not scored or scored[0].score < threshold:
        return []
    return [m for m in scored[:limit] if m.score >= threshold]


def _query(alert: Mapping[str, Any]) -> _Query:
    labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items() if v is not None}
    annotations = alert.get("annotations") or {}
    texts = [labels.get("alertname", "")]
    texts += [str(alert.get(k) or annotations.get(k) or "") for k in ("summary", "description")]
    texts += [v for k, v in labels.items() if k not in _IGNORED_LABELS]
    return _Query(
        alert_name=labels.get("alertname", ""),
        namespace=labels["namespace"][:253] if labels.get("namespace") else None,
        service=workload(labels),
        severity=labels.get("severity"),
        words=_words(texts, limit=_MAX_TERMS),
    )


def _words(texts: Iterable[str | None], limit: int | None = None) -> dict[str, str]:
    """Stem -> first spelling of the meaningful words in `texts` (CamelCase split too)."""
    found: dict[str, str] = {}
    for chunk in texts:
        for token in _WORD.findall(chunk or ""):
            mixed = not (token.islower() or token.isupper())
            for word in {token, *_CAMEL.findall(token)} if mixed else (token,):
                lower = word.lower()
                if len(lower) < 3 or lower in _STOP or lower.isdigit():
                    continue
                found.setdefault(_stem(lower), lower)
                if limit is not None and len(found) >= limit:
                    return found
    return found


def _stem(word: str) -> str:
    """A crude English stemmer, the same on both sides of the comparison."""
    for suffix in ("ations", "ation", "ings", "ing", "ied", "ies", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _full_text(session: Session, query: _Query) -> dict[uuid.UUID, float]:
    """Entry id -> full-text rank (higher is better) of the best `CANDIDATES` entries among
    those holding one of the alert's uncommon words."""
    terms = sorted({w for w in query.words.values() if w.isalnum()})
    if not terms:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        return _postgresql(session, terms)
    return _sqlite(session, terms)


_PG_UNCOMMON = text(
    "SELECT DISTINCT q.lexeme FROM unnest(to_tsvector('english', :words)) AS q "
    "LEFT JOIN (SELECT unnest(most_common_elems::text::text[]) AS lexeme, "
    "unnest(most_common_elem_freqs) AS freq FROM pg_stats "
    "WHERE schemaname = current_schema() AND tablename = 'idx_knowledge_base_document') AS s "
    "ON s.lexeme = q.lexeme "
    "WHERE coalesce(s.freq, 0) * (SELECT greatest(reltuples, 0) FROM pg_class "
    "WHERE oid = 'knowledge_base'::regclass) <= :common"
)
_PG_RANKED = text(
    f"SELECT id, ts_rank(to_tsvector('english', {DOCUMENT_TEXT}), "
    "to_tsquery('english', :all)) AS rank FROM ("
    f"SELECT id, {', '.join(DOCUMENT_FIELDS)} FROM knowledge_base "
    f"WHERE to_tsvector('english', {DOCUMENT_TEXT}) @@ to_tsquery('simple', :uncommon) "
    "AND (verdict IS NULL OR verdict <> 'wrong') "
    "ORDER BY confirmed DESC, created_at DESC LIMIT :scanned) AS found "
    "ORDER BY rank DESC LIMIT :n"
)


def _postgresql(session: Session, terms: list[str]) -> dict[uuid.UUID, float]:
    """The planner's statistics of the index (ANALYZE, autovacuum) say which lexemes are
    common; only the others find candidates."""
    lexemes = session.scalars(_PG_UNCOMMON, {"words": " ".join(terms), "common": COMMON})
    uncommon = [lexeme for lexeme in lexemes if lexeme.isalnum()]
    if not uncommon:
        return {}
    rows = session.execute(
        _PG_RANKED,
        {
            "all": " | ".join(terms),
            "uncommon": " | ".join(uncommon),
            "scanned": SCANNED,
            "n": CANDIDATES,
        },
    )
    return {_uuid(key): float(rank) for key, rank in rows}


_SQLITE_COUNT = text(
    "SELECT count(*) FROM (SELECT 1 FROM knowledge_fts WHERE knowledge_fts MATCH :term "
    "LIMIT :common)"
)
_SQLITE_RANKED = text(
    "SELECT knowledge_base.id, -bm25(knowledge_fts) AS rank FROM knowledge_fts "
    "JOIN knowledge_base ON knowledge_base.rowid = knowledge_fts.rowid "
    "WHERE knowledge_fts MATCH :terms "
    "AND (knowledge_base.verdict IS NULL OR knowledge_base.verdict <> 'wrong') "
    "ORDER BY bm25(knowledge_fts) LIMIT :n"
)


def _sqlite(session: Session, terms: list[str]) -> dict[uuid.UUID, float]:
    """Each word's entries are counted up to `COMMON`; only the others find candidates."""
    uncommon = [
        f'"{term}"'
        for term in terms
        if (session.scalar(_SQLITE_COUNT, {"term": f'"{term}"', "common": COMMON + 1}) or 0)
        <= COMMON
    ]
    if not uncommon:
        return {}
    rows = session.execute(_SQLITE_RANKED, {"terms": " OR ".join(uncommon), "n": CANDIDATES})
    return {_uuid(key): max(float(rank), 0.0) for key, rank in rows}


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _score(query: _Query, entry: KnowledgeEntry, rank: float) -> Match:
    reasons = []
    structured = 0.0
    same = {
        "alertname": bool(query.alert_name) and entry.alert_name == query.alert_name,
        "namespace": bool(query.namespace) and entry.namespace == query.namespace,
        "service": bool(query.service) and entry.service == query.service,
        "severity": bool(query.severity) and entry.severity == query.severity,
    }
    for name, weight in STRUCTURED.items():
        if same[name]:
            structured += weight
            reasons.append(f"same {name}")
    fields = (entry.alert_name, entry.summary, entry.root_cause, entry.fix)
    document = _words([*fields, entry.resolution_notes])
    shared = [word for stem, word in query.words.items() if stem in document]
    coverage = len(shared) / len(query.words) if query.words else 0.0
    lexical = coverage * (0.5 + 0.5 * rank)
    if shared:
        reasons.append("text: " + " ".join(shared[:5]))
    similarity = (1 - LEXICAL_SHARE) * structured + LEXICAL_SHARE * lexical
    score = (1 - CONFIRMED_BOOST) * similarity + (CONFIRMED_BOOST if entry.confirmed else 0.0)
    if entry.confirmed:
        reasons.append("confirmed by a person")
    return Match(
        entry_id=entry.id,
        incident_id=entry.incident_id,
        score=round(score, 4),
        reasons=reasons,
        confirmed=entry.confirmed,
        verdict=entry.verdict,
        when=entry.created_at,
        alert_name=entry.alert_name,
        summary=entry.summary,
        root_cause=entry.root_cause,
        fix=entry.fix,
        outcome=entry.outcome,
    )
