"""The two small expression languages of a compiled manifest, evaluated without eval().

- `when` (Argo evaluates it with govaluate after substitution): literals, `==`, `!=`, `<`,
  `<=`, `>`, `>=`, `&&`, `||`, `!`, parentheses. Bare words are strings, as in Argo. Unlike Argo,
  the text is tokenised *before* `{{…}}` is substituted, so a substituted value is always one
  value (a quoted one stays inside its quotes) and can never add operators.
- `{{=…}}` (Argo's expr): variable paths with `.`, `?.` and `['key']`, `??`, string and number
  literals, `true`/`false`/`nil`, and the operators above (`and`/`or`/`not` too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from punchingfist.errors import InvalidManifest, NotSupportedYet

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<placeholder>\{\{.*?\}\})
    | '(?P<single>[^']*)'
    | "(?P<double>[^"]*)"
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\?\.|\?\?|==|!=|<=|>=|&&|\|\||[<>!().\[\]])
    )""",
    re.VERBOSE | re.DOTALL,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class _Token:
    kind: str
    value: str


@dataclass(frozen=True)
class Literal:
    value: Any
    template: bool = False
    """A `when` string literal whose text may hold `{{…}}` to substitute."""


@dataclass(frozen=True)
class Placeholder:
    tag: str


@dataclass(frozen=True)
class Path:
    root: str
    steps: tuple[tuple[str, bool], ...]
    """(key, optional) pairs: `a?.b['c']` is root a, steps (b, True), (c, False)."""


@dataclass(frozen=True)
class Unary:
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | Placeholder | Path | Unary | Binary


class ExpressionError(InvalidManifest):
    """An expression does not parse or does not evaluate (names where and what)."""


def parse_when(text: str, *, where: str) -> Node:
    return _Parser(text, where, when=True).parse()


def parse_expr(text: str, *, where: str) -> Node:
    return _Parser(text, where, when=False).parse()


def placeholders(node: Node) -> list[str]:
    """The `{{…}}` tags a parsed `when` uses, bare or inside string literals."""
    if isinstance(node, Placeholder):
        return [node.tag]
    if isinstance(node, Literal) and node.template:
        return [m.strip() for m in re.findall(r"\{\{(.*?)\}\}", node.value, re.DOTALL)]
    if isinstance(node, Unary):
        return placeholders(node.operand)
    if isinstance(node, Binary):
        return placeholders(node.left) + placeholders(node.right)
    return []


def paths(node: Node) -> list[Path]:
    """The variable paths a parsed `{{=…}}` expression reads."""
    if isinstance(node, Path):
        return [node]
    if isinstance(node, Unary):
        return paths(node.operand)
    if isinstance(node, Binary):
        return paths(node.left) + paths(node.right)
    return []


def evaluate_when(
    node: Node, substitute: Callable[[str], str], resolve: Callable[[str], str], *, where: str
) -> bool:
    """Evaluate a parsed `when`: `substitute` fills string literals, `resolve` one bare tag."""
    value = _Evaluator(where, substitute=substitute, resolve=resolve).run(node)
    if not isinstance(value, bool):
        raise ExpressionError(f"{where}: `when` must be true or false, got {value!r}")
    return value


def evaluate_expr(node: Node, env: Mapping[str, Any], *, where: str) -> Any:
    return _Evaluator(where, env=env).run(node)


class _Parser:
    def __init__(self, text: str, where: str, *, when: bool) -> None:
        self.text = text
        self.where = where
        self.when = when
        self.tokens = self._tokenise()
        self.position = 0

    def _fail(self, message: str) -> ExpressionError:
        return ExpressionError(f"{self.where}: {self.text.strip()!r}: {message}")

    def _tokenise(self) -> list[_Token]:
        tokens: list[_Token] = []
        position = 0
        while self.text[position:].strip():
            match = _TOKEN.match(self.text, position)
            if not match:
                raise self._fail(f"cannot read {self.text[position:].strip()[:40]!r}")
            kind = match.lastgroup or ""
            value = match.group(kind)
            if kind in ("single", "double"):
                kind = "string"
            elif kind == "ident" and not self.when and value in _WORD_OPS:
                kind, value = "op", _WORD_OPS[value]
            elif kind == "placeholder" and not self.when:
                raise self._fail("`{{` inside an expression")
            tokens.append(_Token(kind, value))
            position = match.end()
        return tokens

    def _peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> _Token:
        token = self._peek()
        if token is None:
            raise self._fail("ends too early")
        self.position += 1
        return token

    def _at(self, *ops: str) -> str | None:
        token = self._peek()
        return token.value if token and token.kind == "op" and token.value in ops else None

    def parse(self) -> Node:
        if not self.tokens:
            raise self._fail("empty expression")
        node = self._coalesce()
        if self._peek() is not None:
            raise self._fail(f"unexpected {self.tokens[self.position].value!r}")
        return node

    def _coalesce(self) -> Node:
        node = self._or()
        while not self.when and self._at("??"):
            self._take()
            node = Binary("??", node, self._or())
        return node

    def _or(self) -> Node:
        node = self._and()
        while self._at("||"):
            self._take()
            node = Binary("||", node, self._and())
        return node

    def _and(self) -> Node:
        node = self._comparison()
        while self._at("&&"):
            self._take()
            node = Binary("&&", node, self._comparison())
        return node

    def _comparison(self) -> Node:
        node = self._unary()
        op = self._at("==", "!=", "<", "<=", ">", ">=")
        if op:
            self._take()
            node = Binary(op, node, self._unary())
        return node

    def _unary(self) -> Node:
        if self._at("!"):
            self._take()
            return Unary(self._unary())
        return self._primary()

    def _primary(self) -> Node:
        token = self._take()
        if token.kind == "op" and token.value == "(":
            node = self._coalesce()
            if self._at(")") is None:
                raise self._fail("missing ')'")
            self._take()
            return node
        if token.kind == "string":
            return Literal(token.value, template=self.when and "{{" in token.value)
        if token.kind == "number":
            return Literal(float(token.value) if "." in token.value else int(token.value))
        if token.kind == "placeholder":
            return Placeholder(token.value[2:-2].strip())
        if token.kind == "ident":
            if token.value in ("true", "false"):
                return Literal(token.value == "true")
            if token.value == "nil" and not self.when:
                return Literal(None)
            return Literal(token.value) if self.when else self._path(token.value)
        raise self._fail(f"unexpected {token.value!r}")

    def _path(self, root: str) -> Path:
        steps: list[tuple[str, bool]] = []
        while True:
            if self._at("("):
                called = ".".join([root, *(key for key, _ in steps)])
                raise NotSupportedYet(f"{self.where}: function call {called}(…) in an expression")
            op = self._at(".", "?.", "[")
            if op is None:
                return Path(root, tuple(steps))
            self._take()
            if op == "[":
                key = self._take()
                if key.kind != "string" or self._at("]") is None:
                    raise self._fail("only ['quoted key'] indexes are supported")
                self._take()
                steps.append((key.value, False))
            else:
                name = self._take()
                if name.kind != "ident":
                    raise self._fail(f"expected a name after {op!r}")
                steps.append((name.value, op == "?."))


class _Evaluator:
    def __init__(
        self,
        where: str,
        *,
        env: Mapping[str, Any] | None = None,
        substitute: Callable[[str], str] | None = None,
        resolve: Callable[[str], str] | None = None,
    ) -> None:
        self.where = where
        self.env = env or {}
        self.substitute = substitute
        self.resolve = resolve

    def run(self, node: Node) -> Any:
        if isinstance(node, Literal):
            if node.template and self.substitute:
                return self.substitute(node.value)
            return node.value
        if isinstance(node, Placeholder):
            assert self.resolve is not None
            return _scalar(self.resolve(node.tag))
        if isinstance(node, Path):
            return self._path(node)
        if isinstance(node, Unary):
            return not self._boolean(self.run(node.operand), "!")
        return self._binary(node)

    def _path(self, node: Path) -> Any:
        if node.root not in self.env:
            raise ExpressionError(f"{self.where}: unknown variable {node.root!r}")
        value = self.env[node.root]
        walked = node.root
        for key, optional in node.steps:
            if value is None:
                if optional:
                    return None
                raise ExpressionError(f"{self.where}: {walked} is nil (reading .{key})")
            if not isinstance(value, Mapping):
                raise ExpressionError(f"{self.where}: {walked} has no field {key!r}")
            value = value.get(key)
            walked += f".{key}"
        return value

    def _binary(self, node: Binary) -> Any:
        left = self.run(node.left)
        if node.op == "??":
            return self.run(node.right) if left is None else left
        if node.op in ("&&", "||"):
            first = self._boolean(left, node.op)
            if (node.op == "&&" and not first) or (node.op == "||" and first):
                return first
            return self._boolean(self.run(node.right), node.op)
        right = self.run(node.right)
        if node.op == "==":
            return _same(left, right)
        if node.op == "!=":
            return not _same(left, right)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
        if not numbers and not (isinstance(left, str) and isinstance(right, str)):
            raise ExpressionError(
                f"{self.where}: cannot compare {left!r} {node.op} {right!r} "
                "(two numbers or two strings)"
            )
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "<": lambda a, b: bool(a < b),
            "<=": lambda a, b: bool(a <= b),
            ">": lambda a, b: bool(a > b),
            ">=": lambda a, b: bool(a >= b),
        }
        return comparisons[node.op](left, right)

    def _boolean(self, value: Any, op: str) -> bool:
        if not isinstance(value, bool):
            raise ExpressionError(f"{self.where}: {op} needs true or false, got {value!r}")
        return value


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _scalar(raw: str) -> Any:
    """A substituted bare value: a number or boolean when it reads as one, else a string."""
    text = raw.strip()
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    return raw
