"""The curl tool: HTTP GET/HEAD to allowed hosts only, redirects re-checked, size and time caps."""

from __future__ import annotations

import fnmatch
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from punchingfist.runtime.tools.base import ToolResult, cap, refused

MAX_BYTES = 256 * 1024
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class CurlPolicy:
    allowed_domains: tuple[str, ...] = ()
    """Host patterns (`*.svc.cluster.local`, `payments`); empty means no host is allowed."""
    timeout: float = 10.0
    max_bytes: int = MAX_BYTES


def host_allowed(url: str, policy: CurlPolicy) -> str | None:
    """Why `url` may not be fetched, or None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}"
    host = (parts.hostname or "").lower()
    if not host:
        return "the URL has no host"
    if parts.username or parts.password:
        return "URLs with credentials are not allowed"
    if not any(fnmatch.fnmatch(host, pattern.lower()) for pattern in policy.allowed_domains):
        allowed = ", ".join(policy.allowed_domains) or "none are configured"
        return f"host {host!r} is not in the allowed domains ({allowed})"
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def run(url: str, policy: CurlPolicy, method: str = "GET") -> ToolResult:
    if method not in ("GET", "HEAD"):
        return refused(f"method {method} is not allowed: only GET and HEAD")
    started = time.monotonic()
    trail: list[str] = []
    for _ in range(MAX_REDIRECTS + 1):
        reason = host_allowed(url, policy)
        if reason is not None:
            return refused(reason if not trail else f"redirect to {url} refused: {reason}")
        trail.append(url)
        request = urllib.request.Request(url, method=method, headers={"User-Agent": "punchingfist"})
        try:
            response = _OPENER.open(request, timeout=policy.timeout)
        except urllib.error.HTTPError as error:
            if error.code in (301, 302, 303, 307, 308) and error.headers.get("Location"):
                url = urllib.parse.urljoin(url, error.headers["Location"])
                continue
            body = error.read(policy.max_bytes).decode(errors="replace")
            text, truncated = cap(body)
            return ToolResult(
                status="error",
                output=text,
                error=f"HTTP {error.code} {error.reason}",
                truncated=truncated,
                seconds=_since(started),
                details={"status": error.code, "redirects": trail[1:]},
            )
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            why: object = getattr(error, "reason", None) or error
            return ToolResult(
                status="error", error=f"request failed: {why}", seconds=_since(started)
            )
        with response:
            body_bytes = response.read(policy.max_bytes + 1)
            status = response.status
            headers = _headers(response.headers.items())
        over = len(body_bytes) > policy.max_bytes
        body = body_bytes[: policy.max_bytes].decode(errors="replace")
        text, truncated = cap(
            f"HTTP {status}\n{headers}\n\n{body}"
            if method == "GET"
            else f"HTTP {status}\n{headers}"
        )
        if over:
            text += f"\n[... body larger than {policy.max_bytes} bytes: cut ...]"
        return ToolResult(
            status="ok",
            output=text,
            truncated=truncated or over,
            seconds=_since(started),
            details={"status": status, "redirects": trail[1:]},
        )
    return ToolResult(status="error", error=f"more than {MAX_REDIRECTS} redirects")


def _headers(items: Sequence[tuple[str, str]]) -> str:
    keep = ("content-type", "content-length", "location", "server", "retry-after")
    return "\n".join(f"{k}: {v}" for k, v in items if k.lower() in keep)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
