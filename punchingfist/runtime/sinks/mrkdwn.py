"""Slack's text markup: what an alert or a model wrote is shown as text, never read as markup.

Slack reads `<…>` as links and mentions (`<!channel>`, `<@U…>`, `<https://x|label>`) and `&`
as the start of an entity. Text we did not write has `&`, `<` and `>` escaped (Slack's own
rule), and an `@word` gets an invisible word joiner after the `@`, so `link_names` cannot turn
it into a mention either. Links are built only from URLs that pass `safe_url`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

WORD_JOINER = "\u2060"
_MENTION = re.compile(r"(?<![\w.+-])@(?=\w)")
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"
"""Left as they are in a URL; everything else (`|`, `<`, `>`, whitespace, controls, non-ASCII)
is percent-encoded."""


def escape(text: object) -> str:
    """`text` as Slack shows it literally: `&`, `<`, `>` escaped, `@mentions` defused."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("@" + WORD_JOINER, escaped)


def escaped(value: Any) -> Any:
    """A template context with every string in it escaped (keys too), for rendering a
    template that is Slack markup: the template's own markup stays, the values are text."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {escape(k) if isinstance(k, str) else k: escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escaped(item) for item in value]
    return value


def safe_url(url: object) -> str | None:
    """`url` fit to be a link target: http or https with a host and no user part, with
    `|`, `<`, `>`, whitespace and other unsafe characters percent-encoded; else None."""
    if not isinstance(url, str):
        return None
    encoded = quote(url.strip(), safe=_URL_SAFE)
    try:
        parts = urlsplit(encoded)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if "@" in parts.netloc:  # https://trusted.example@evil.example/ names another host
        return None
    return encoded


def link(url: object, label: str) -> str:
    """A Slack link to `url` labelled `label`; "" when the URL is not safe to link."""
    target = safe_url(url)
    if target is None:
        return ""
    return f"<{target.replace('&', '&amp;')}|{escape(label)}>"
