"""What an eval run produced: one `CaseResult` per scenario run, and the report's summary.

The JSON report (`-o json`, `--output FILE.json`) is `Report.as_dict()`:

    version        1
    model          the model under test (name), endpoint (URL, never a key), mode
    judge          the judge's model and endpoint, or null
    started, finished   ISO 8601 UTC
    options        repeat, jobs, live
    summary        cases, passed, failed, skipped, pass_rate (of the cases that ran),
                   overconfident (wrong at high confidence), by_tag {tag: {cases, passed,
                   pass_rate}}, tokens {total, mean}, cost_usd {total, per_case} (null when
                   the price is unknown), seconds {p50, p95, total}, turns {mean}
    results        [CaseResult.as_dict()]: scenario, repeat, tags, status passed|failed|skipped,
                   reasons, overconfident, answer {summary, root_cause, confidence, evidence},
                   turns, tool_calls [{id, tool, call, status}], tokens {prompt, completion,
                   total}, cost_usd, seconds, error, judge {passed, missing, reason} | null,
                   log (the transcript file, when kept)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["passed", "failed", "skipped"]
VERSION = 1


@dataclass
class CaseResult:
    scenario: str
    repeat: int = 1
    tags: list[str] = field(default_factory=list)
    status: Status = "failed"
    reasons: list[str] = field(default_factory=list)
    overconfident: bool = False
    answer: dict[str, Any] | None = None
    turns: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, int] = field(
        default_factory=lambda: {"prompt": 0, "completion": 0, "total": 0}
    )
    cost_usd: float | None = None
    seconds: float = 0.0
    error: str | None = None
    judge: dict[str, Any] | None = None
    log: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (`fraction` 0..1) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _rate(passed: int, cases: int) -> float | None:
    return round(passed / cases, 4) if cases else None


def summarize(results: Sequence[CaseResult]) -> dict[str, Any]:
    ran = [r for r in results if r.status != "skipped"]
    passed = sum(r.status == "passed" for r in ran)
    tags: dict[str, dict[str, Any]] = {}
    for result in ran:
        for tag in result.tags:
            entry = tags.setdefault(tag, {"cases": 0, "passed": 0})
            entry["cases"] += 1
            entry["passed"] += result.status == "passed"
    for entry in tags.values():
        entry["pass_rate"] = _rate(entry["passed"], entry["cases"])
    tokens = [r.tokens.get("total", 0) for r in ran]
    costs = [r.cost_usd for r in ran]
    known = None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)
    seconds = [r.seconds for r in ran]
    return {
        "cases": len(results),
        "passed": passed,
        "failed": len(ran) - passed,
        "skipped": len(results) - len(ran),
        "pass_rate": _rate(passed, len(ran)),
        "overconfident": sum(r.overconfident for r in ran),
        "by_tag": dict(sorted(tags.items())),
        "tokens": {"total": sum(tokens), "mean": round(sum(tokens) / len(ran)) if ran else 0},
        "cost_usd": {
            "total": round(known, 6) if known is not None else None,
            "per_case": round(known / len(ran), 6) if known is not None and ran else None,
        },
        "seconds": {
            "p50": percentile(seconds, 0.5),
            "p95": percentile(seconds, 0.95),
            "total": round(sum(seconds), 3),
        },
        "turns": {"mean": round(sum(r.turns for r in ran) / len(ran), 2) if ran else 0},
    }


@dataclass
class Report:
    model: dict[str, Any]
    judge: dict[str, Any] | None
    started: str
    finished: str
    options: dict[str, Any]
    results: list[CaseResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "model": self.model,
            "judge": self.judge,
            "started": self.started,
            "finished": self.finished,
            "options": self.options,
            "summary": summarize(self.results),
            "results": [r.as_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            model=data.get("model") or {},
            judge=data.get("judge"),
            started=data.get("started", ""),
            finished=data.get("finished", ""),
            options=data.get("options") or {},
            results=[CaseResult.from_dict(r) for r in data.get("results") or []],
        )
