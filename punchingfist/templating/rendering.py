"""Parse, check and render templates in a sandbox (D1).

A template is parsed once (`compile_template`), checked for sandbox escapes, and then rendered
with plain data. Values are data: whatever an alert label contains is inserted as text and never
parsed as a template again.
"""

from __future__ import annotations

import difflib
import json
import operator
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property, lru_cache
from typing import Any

import yaml
from jinja2 import StrictUndefined, Undefined, nodes
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from punchingfist.errors import TemplateRenderError, TemplateSecurityError, TemplateSyntaxError
from punchingfist.templating.dialect import Translation, translate, translate_expression

MAX_OUTPUT = 1_000_000
"""Largest rendered text, in characters."""
_FALSE_WORDS = {"", "false", "no", "0", "off", "none", "null", "nil"}


class _Missing(StrictUndefined):
    """Strict, but chainable: ``.a.b.c | default x`` works when ``.a`` is missing."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> Any:
        return self


def _default(value: Any, fallback: Any = "", boolean: bool = False) -> Any:
    if isinstance(value, Undefined) or value is None or (boolean and not value):
        return fallback
    return value


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, indent=indent)


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (no mutating methods), plus limits on `*` and `**`."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent larger than 64 is not allowed in templates")
            return left**right
        for count, value in ((right, left), (left, right)):
            sized = isinstance(count, int) and isinstance(value, (str, list, tuple))
            if sized and count * len(value) > MAX_OUTPUT:
                raise SecurityError("the result of `*` would be too large")
        return operator.mul(left, right)


def _environment() -> SandboxedEnvironment:
    env = _Sandbox(
        undefined=_Missing,
        autoescape=False,
        keep_trailing_newline=True,
        extensions=[],
    )
    env.filters.update(
        {
            "default": _default,
            "d": _default,
            "toJSON": _to_json,
            "toJson": _to_json,
            "tojson": _to_json,
            "toYAML": _to_yaml,
            "toYaml": _to_yaml,
            "quote": shlex.quote,
        }
    )
    env.globals.clear()
    return env


_ENV = _environment()


class Template:
    """A parsed, checked template. Python code is generated on first render only."""

    def __init__(self, source: str, translation: Translation, tree: nodes.Template) -> None:
        self.source = source
        self.jinja = translation.jinja
        self.references: frozenset[tuple[str, ...]] = frozenset(_references(tree))
        """Every variable path the template reads, e.g. ``("steps", "investigate", "result")``."""
        self._translation = translation

    @property
    def roots(self) -> frozenset[str]:
        """Top-level names the template reads (source, steps, env, workflow, outputs)."""
        return frozenset(path[0] for path in self.references)

    @cached_property
    def _render(self) -> Callable[..., str]:
        return _ENV.from_string(self.jinja).render

    @cached_property
    def expression(self) -> Callable[..., Any] | None:
        """For a template that is a single ``{{ expr }}``: the expression (native values)."""
        stripped = self.source.strip()
        if len(self._translation.blocks) != 1 or not (
            stripped.startswith("{{") and stripped.endswith("}}")
        ):
            return None
        inner = self.jinja.strip()[2:-2]
        return _ENV.compile_expression(inner, undefined_to_none=False)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render to text. Undefined values are errors unless piped through ``default``."""
        try:
            text = self._render(context)
        except (UndefinedError, SecurityError, TemplateError, TypeError, ValueError) as error:
            raise self._error(error, context) from error
        if len(text) > MAX_OUTPUT:
            raise TemplateRenderError(f"rendered text is longer than {MAX_OUTPUT} characters")
        return text

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The native value of a single-expression template, else the rendered text."""
        if self.expression is None:
            return self.render(context)
        try:
            value = self.expression(**context)
            if isinstance(value, Undefined):
                str(value)  # raises UndefinedError
        except (UndefinedError, SecurityError, TemplateError, TypeError, ValueError) as error:
            raise self._error(error, context) from error
        return value

    def _error(self, error: Exception, context: Mapping[str, Any]) -> TemplateRenderError:
        if isinstance(error, UndefinedError):
            missing = _first_missing(self.references, context)
            if missing is not None:
                return TemplateRenderError(_explain(f"`{missing}` is undefined"))
        return _render_error(error)

    def is_true(self, context: Mapping[str, Any]) -> bool:
        """Evaluate as a condition: booleans as they are, text 'false'/'no'/'0'/'' as false."""
        return truthy(self.evaluate(context))


def truthy(value: Any) -> bool:
    """Truth of a condition value; strings are read as words, not as non-empty-ness."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def compile_template(
    source: str, *, resource: str | None = None, field: str | None = None
) -> Template:
    """Parse and check a template of the dialect. Errors name resource, field, line, column."""
    try:
        return _compile(source)
    except (TemplateSyntaxError, TemplateSecurityError) as error:
        raise error.located(resource=resource, field=field) from error


def compile_expression(
    expression: str, *, resource: str | None = None, field: str | None = None
) -> Template:
    """Parse a bare expression such as ``severity == 'critical'`` (no braces)."""
    return compile_template("{{ " + expression + " }}", resource=resource, field=field)


@lru_cache(maxsize=4096)
def _compile(source: str) -> Template:
    translation = translate(source)
    try:
        tree = _ENV.parse(translation.jinja)
    except JinjaSyntaxError as error:
        line, column = _locate(translation, error.lineno)
        raise TemplateSyntaxError(
            error.message or "syntax error", line=line, column=column
        ) from error
    _check_sandbox(tree, translation)
    _check_names(tree, translation)
    return Template(source, translation, tree)


def _check_names(tree: nodes.Template, translation: Translation) -> None:
    """Unknown filters and tests are syntax errors (Jinja would only say so at code generation)."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = _ENV.filters if isinstance(node, nodes.Filter) else _ENV.tests
        if node.name not in known:
            line, column = _locate(translation, node.lineno)
            what = "filter" if isinstance(node, nodes.Filter) else "test"
            hint = difflib.get_close_matches(node.name, list(known), n=1)
            raise TemplateSyntaxError(
                f"no {what} named {node.name!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""),
                line=line,
                column=column,
            )


def _locate(translation: Translation, lineno: int | None) -> tuple[int | None, int | None]:
    if lineno is None:
        return None, None
    columns = [column for line, column in translation.blocks if line == lineno]
    return lineno, (columns[0] if columns else None)


_FORBIDDEN_NODES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


def _check_sandbox(tree: nodes.Template, translation: Translation) -> None:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, *_FORBIDDEN_NODES)):
        line, column = _locate(translation, node.lineno)
        if isinstance(node, _FORBIDDEN_NODES):
            raise TemplateSecurityError(
                f"`{type(node).__name__.lower()}` is not allowed in templates",
                line=line,
                column=column,
            )
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value if isinstance(node.arg.value, str) else None
        elif isinstance(node, nodes.Name):
            name = node.name
        if name is not None and name.startswith("_"):
            raise TemplateSecurityError(
                f"access to {name!r} is not allowed: names starting with '_' are private",
                line=line,
                column=column,
            )


def _references(tree: nodes.Template) -> Iterator[tuple[str, ...]]:
    """Yield the longest constant path of every variable access in the tree."""
    inner: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        inner.add(id(getattr(node, "node", None)))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in inner:
            continue
        path = _path(node)
        if path:
            yield path


def _path(node: nodes.Node) -> tuple[str, ...] | None:
    if isinstance(node, nodes.Name):
        return (node.name,) if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        base = _path(node.node)
        return (*base, node.attr) if base else None
    if isinstance(node, nodes.Getitem):
        base = _path(node.node)
        if base is None:
            return None
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return (*base, node.arg.value)
        return base
    return None


def _first_missing(
    references: frozenset[tuple[str, ...]], context: Mapping[str, Any]
) -> str | None:
    """The first referenced path that does not resolve, written as the user would: `.a.b`."""
    for path in sorted(references):
        node: Any = context
        for depth, part in enumerate(path):
            if isinstance(node, Mapping) and part in node:
                node = node[part]
                continue
            if isinstance(node, Mapping) or depth == 0:
                return "." + ".".join(path[: depth + 1])
            break
    return None


def _explain(message: str) -> str:
    return f"{message} (pipe optional values through `| default ...`)"


def _render_error(error: Exception) -> TemplateRenderError:
    if isinstance(error, UndefinedError):
        return TemplateRenderError(_explain(str(error)))
    if isinstance(error, SecurityError):
        return TemplateRenderError(f"refused by the sandbox: {error}")
    return TemplateRenderError(f"{type(error).__name__}: {error}")


__all__ = [
    "Template",
    "compile_expression",
    "compile_template",
    "translate_expression",
    "truthy",
]
