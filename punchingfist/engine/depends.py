"""Argo's `depends` logic: parse a DAG task's dependency expression and evaluate it on phases.

Operands are `TASK` or `TASK.RESULT`; a bare `TASK` means
`(TASK.Succeeded || TASK.Skipped || TASK.Daemoned)`. Operators: `&&`, `||`, `!`, parentheses.
The legacy `dependencies: [A, B]` list is `A && B`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from punchingfist.engine.phases import ERROR, FAILED, OMITTED, SKIPPED, SUCCEEDED
from punchingfist.errors import InvalidManifest, NotSupportedYet

_RESULTS = {
    "Succeeded": (SUCCEEDED,),
    "Failed": (FAILED,),
    "Errored": (ERROR,),
    "Skipped": (SKIPPED,),
    "Omitted": (OMITTED,),
    "Daemoned": (),
}
"""Each task result and the node phases that make it true (no task is daemoned locally)."""
_BARE = (SUCCEEDED, SKIPPED)
_LOOP_RESULTS = ("AnySucceeded", "AllFailed")
_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z0-9][A-Za-z0-9_.-]*))")


@dataclass(frozen=True)
class Operand:
    task: str
    phases: tuple[str, ...]


@dataclass(frozen=True)
class Not:
    operand: Expression


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expression
    right: Expression


Expression = Operand | Not | Binary


@dataclass(frozen=True)
class Depends:
    """A parsed `depends`: the tasks it names and the expression over their phases."""

    text: str
    tree: Expression | None

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset(_tasks(self.tree)) if self.tree else frozenset()

    def holds(self, phases: dict[str, str]) -> bool:
        """Evaluate on the phases of the (completed) dependencies."""
        return _evaluate(self.tree, phases) if self.tree else True


def parse_depends(text: str | None, dependencies: list[str] | None, *, where: str) -> Depends:
    if text and dependencies:
        raise InvalidManifest(f"{where}: use either `depends` or `dependencies`, not both")
    if dependencies:
        text = " && ".join(dependencies)
    if not text or not text.strip():
        return Depends(text="", tree=None)
    tokens = _tokens(text, where)
    parser = _Parser(tokens, text, where)
    tree = parser.expression()
    if parser.position != len(tokens):
        raise InvalidManifest(f"{where}: depends {text!r}: unexpected {tokens[parser.position]!r}")
    return Depends(text=text, tree=tree)


def _tokens(text: str, where: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise InvalidManifest(
                f"{where}: depends {text!r}: cannot read {text[position:].strip()!r}"
            )
        tokens.append(match.group(1) or match.group(2))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], text: str, where: str) -> None:
        self.tokens = tokens
        self.text = text
        self.where = where
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise InvalidManifest(f"{self.where}: depends {self.text!r} ends too early")
        self.position += 1
        return token

    def expression(self) -> Expression:
        left = self._conjunction()
        while self._peek() == "||":
            self._take()
            left = Binary("||", left, self._conjunction())
        return left

    def _conjunction(self) -> Expression:
        left = self._unary()
        while self._peek() == "&&":
            self._take()
            left = Binary("&&", left, self._unary())
        return left

    def _unary(self) -> Expression:
        token = self._take()
        if token == "!":
            return Not(self._unary())
        if token == "(":
            inner = self.expression()
            if self._peek() != ")":
                raise InvalidManifest(f"{self.where}: depends {self.text!r}: missing ')'")
            self._take()
            return inner
        if token in ("&&", "||", ")"):
            raise InvalidManifest(f"{self.where}: depends {self.text!r}: unexpected {token!r}")
        return self._operand(token)

    def _operand(self, token: str) -> Operand:
        task, dot, result = token.rpartition(".")
        if not dot:
            return Operand(token, _BARE)
        if result in _LOOP_RESULTS:
            raise NotSupportedYet(
                f"{self.where}: depends result .{result} (it needs withItems/withParam loops)"
            )
        if result not in _RESULTS:
            known = ", ".join(f".{name}" for name in _RESULTS)
            raise InvalidManifest(
                f"{self.where}: depends {self.text!r}: unknown task result .{result} "
                f"(known: {known})"
            )
        return Operand(task, _RESULTS[result])


def _tasks(tree: Expression) -> list[str]:
    if isinstance(tree, Operand):
        return [tree.task]
    if isinstance(tree, Not):
        return _tasks(tree.operand)
    return _tasks(tree.left) + _tasks(tree.right)


def _evaluate(tree: Expression, phases: dict[str, str]) -> bool:
    if isinstance(tree, Operand):
        return phases.get(tree.task) in tree.phases
    if isinstance(tree, Not):
        return not _evaluate(tree.operand, phases)
    if tree.op == "&&":
        return _evaluate(tree.left, phases) and _evaluate(tree.right, phases)
    return _evaluate(tree.left, phases) or _evaluate(tree.right, phases)
