"""Translate the design document's Go-flavoured template syntax into Jinja2 source (D1).

Accepted inside ``{{ }}`` and ``{% %}``:

- leading-dot paths: ``.source.data.alert.alertname``;
- hyphenated names: ``.steps.agent-investigation.result`` becomes
  ``steps["agent-investigation"].result``;
- Go-style pipes with space-separated arguments: ``| default false`` becomes ``| default(false)``;
- everything Jinja already understands (``not``, ``==``, ``and``, literals, ``| toJSON``,
  plain paths such as ``source.data.alert.alertname``).

Text outside the delimiters is never touched. The translation keeps every newline, so Jinja's
line numbers are the user's line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from punchingfist.errors import TemplateSyntaxError

_BLOCK = re.compile(r"\{\{(?P<expr>.*?)\}\}|\{%(?P<stmt>.*?)%\}|\{#.*?#\}", re.DOTALL)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A path segment may contain hyphens between letters/digits: agent-investigation, step-1.
_SEGMENT = rf"{_IDENT}(?:-[A-Za-z0-9_]+)*"
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<dotpath>\.{_SEGMENT}(?:\.{_SEGMENT})*)
  | (?P<path>{_SEGMENT}(?:\.{_SEGMENT})*)
  | (?P<pipe>\|)
  | (?P<op>==|!=|<=|>=|\*\*|//|[-+*/%<>()\[\],:~=.])
    """,
    re.VERBOSE,
)
_PY_IDENT = re.compile(rf"^{_IDENT}$")
# Words that end a Go-style filter argument list.
_KEYWORDS = {
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "for",
    "recursive",
    "with",
    "without",
    "context",
    "as",
    "import",
}
_LITERALS = {
    "true": "true",
    "false": "false",
    "none": "none",
    "nil": "none",
    "True": "true",
    "False": "false",
    "None": "none",
}


@dataclass(frozen=True)
class Translation:
    """The Jinja source of a template and where each block started in the original."""

    jinja: str
    blocks: tuple[tuple[int, int], ...]
    """(line, column) of each ``{{`` / ``{%`` in the original, 1-based."""


def translate(source: str) -> Translation:
    """Translate a template string of the dialect into Jinja2 source."""
    out: list[str] = []
    blocks: list[tuple[int, int]] = []
    position = 0
    for match in _BLOCK.finditer(source):
        out.append(source[position : match.start()])
        position = match.end()
        line, column = _line_column(source, match.start())
        inner = match.group("expr") if match.group("expr") is not None else match.group("stmt")
        if inner is None:  # a comment stays a comment
            out.append(match.group(0))
            continue
        blocks.append((line, column))
        opener, closer = ("{{", "}}") if match.group("expr") is not None else ("{%", "%}")
        offset = match.start() + 2
        out.append(opener + _translate_expression(inner, source, offset) + closer)
    rest = source[position:]
    for opener in ("{{", "{%"):
        if opener in rest:
            line, column = _line_column(source, position + rest.index(opener))
            raise TemplateSyntaxError(f"`{opener}` is never closed", line=line, column=column)
    out.append(rest)
    return Translation(jinja="".join(out), blocks=tuple(blocks))


def translate_expression(expression: str) -> str:
    """Translate a bare expression (no delimiters), e.g. a sink's ``triggerCondition``."""
    return _translate_expression(expression, expression, 0)


def _translate_expression(text: str, source: str, offset: int) -> str:
    tokens = _tokenize(text, source, offset)
    out: list[str] = []
    index = 0
    while index < len(tokens):
        kind, value = tokens[index]
        previous = tokens[index - 1] if index else ("space", "")
        if kind == "dotpath" and (previous[0] in ("string", "path") or previous[1] in (")", "]")):
            # `x.y` right after a value is attribute access, not a path from the root.
            out.append(_jinja_path(["_", *value[1:].split(".")])[1:])
        elif kind == "dotpath":
            out.append(_jinja_path(value[1:].split(".")))
        elif kind == "path":
            out.append(_LITERALS.get(value) or _jinja_path(value.split(".")))
        elif kind == "pipe":
            index = _translate_filter(tokens, index, out)
            continue
        else:
            out.append(value)
        index += 1
    return "".join(out)


def _translate_filter(tokens: list[tuple[str, str]], index: int, out: list[str]) -> int:
    """Emit ``| name`` or ``| name(args)`` for a Go-style ``| name arg arg``; return next index."""
    out.append("|")
    index += 1
    while index < len(tokens) and tokens[index][0] == "space":
        out.append(tokens[index][1])
        index += 1
    if index >= len(tokens) or tokens[index][0] != "path" or "." in tokens[index][1]:
        # Let Jinja report the malformed filter with its own message.
        return index
    out.append(tokens[index][1])
    index += 1
    # Jinja style `| name(...)` or no arguments: nothing to rewrite.
    look = index
    while look < len(tokens) and tokens[look][0] == "space":
        look += 1
    if look < len(tokens) and tokens[look][1] == "(":
        return index
    args: list[str] = []
    while look < len(tokens):
        kind, value = tokens[look]
        if kind in ("string", "number", "dotpath") or (kind == "path" and value not in _KEYWORDS):
            args.append(_translate_expression(value, value, 0) if kind != "string" else value)
            look += 1
            while look < len(tokens) and tokens[look][0] == "space":
                look += 1
            continue
        break
    if args:
        out.append("(" + ", ".join(args) + ")")
        # keep the whitespace that followed the last argument
        if look > 0 and tokens[look - 1][0] == "space":
            out.append(tokens[look - 1][1])
        return look
    return index


def _jinja_path(segments: list[str]) -> str:
    root, rest = segments[0], segments[1:]
    if not _PY_IDENT.match(root):
        # A hyphenated root cannot be a variable; Jinja would read it as a subtraction.
        *left, last = root.split("-")
        return " - ".join([*left, _jinja_path([last, *rest])])
    path = root
    for segment in rest:
        path += f".{segment}" if _PY_IDENT.match(segment) else f'["{segment}"]'
    return path


def _tokenize(text: str, source: str, offset: int) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            line, column = _line_column(source, offset + position)
            raise TemplateSyntaxError(
                f"unexpected character {text[position]!r}", line=line, column=column
            )
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(0)))
        position = match.end()
    return tokens


def _line_column(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column
