"""The promql tool: instant and range queries against Prometheus's HTTP API, rendered compactly."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from punchingfist.runtime.redaction import redact
from punchingfist.runtime.tools.base import ToolResult, cap

MAX_SERIES = 50


@dataclass(frozen=True)
class PromqlSettings:
    url: str
    token: str | None = None
    timeout: float = 20.0


def run(
    settings: PromqlSettings,
    query: str,
    *,
    range_minutes: int | None = None,
    step_seconds: int | None = None,
    now: float | None = None,
) -> ToolResult:
    """The query's answer; the token never in it, even when Prometheus (or a proxy in front
    of it) quotes the credential it was sent."""
    result = _query(settings, query, range_minutes, step_seconds, now)
    if not settings.token:
        return result
    error = redact(result.error, [settings.token]) if result.error else None
    return replace(result, output=redact(result.output, [settings.token]), error=error)


def _query(
    settings: PromqlSettings,
    query: str,
    range_minutes: int | None,
    step_seconds: int | None,
    now: float | None,
) -> ToolResult:
    if not query.strip():
        return ToolResult(status="error", error="the query is empty")
    if not settings.url:
        return ToolResult(status="error", error="no Prometheus URL is configured for this step")
    end = now if now is not None else time.time()
    params: dict[str, str]
    if range_minutes:
        step = step_seconds or max(15, range_minutes * 60 // 60)
        params = {
            "query": query,
            "start": f"{end - range_minutes * 60:.3f}",
            "end": f"{end:.3f}",
            "step": str(step),
        }
        path = "/api/v1/query_range"
    else:
        params = {"query": query, "time": f"{end:.3f}"}
        path = "/api/v1/query"
    request = urllib.request.Request(
        settings.url.rstrip("/") + path,
        data=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    if settings.token:
        request.add_header("Authorization", f"Bearer {settings.token}")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        message = _prometheus_error(error)
        return ToolResult(status="error", error=message, seconds=_since(started))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return ToolResult(
            status="error", error=f"Prometheus is unreachable: {reason}", seconds=_since(started)
        )
    except ValueError:
        return ToolResult(
            status="error",
            error="Prometheus answered with something not JSON",
            seconds=_since(started),
        )
    if body.get("status") != "success":
        return ToolResult(
            status="error", error=str(body.get("error", "query failed")), seconds=_since(started)
        )
    text, truncated = cap(render(body.get("data", {})))
    return ToolResult(status="ok", output=text, truncated=truncated, seconds=_since(started))


def render(data: dict[str, Any]) -> str:
    """One line per series: `{labels} value` or `{labels} first -> last (min..max, n points)`."""
    kind = data.get("resultType")
    result = data.get("result", [])
    if kind == "scalar" or kind == "string":
        return f"{kind}: {result[1]}"
    if not result:
        return "no series matched"
    lines = []
    for series in result[:MAX_SERIES]:
        labels = _labels(series.get("metric", {}))
        if "values" in series:
            values = [float(v) for _, v in series["values"]]
            if not values:
                continue
            lines.append(
                f"{labels} {_num(values[0])} -> {_num(values[-1])} "
                f"(min {_num(min(values))}, max {_num(max(values))}, {len(values)} points)"
            )
        else:
            lines.append(f"{labels} {_num(float(series['value'][1]))}")
    if len(result) > MAX_SERIES:
        lines.append(f"[... {len(result) - MAX_SERIES} more series not shown ...]")
    return "\n".join(lines)


def _labels(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _num(value: float) -> str:
    return f"{value:.6g}"


def _prometheus_error(error: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(error.read())
        return f"Prometheus rejected the query ({error.code}): {body.get('error', '')}"
    except (ValueError, OSError):
        return f"Prometheus answered HTTP {error.code}"


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
