"""The engine's expression languages: Argo `depends`, govaluate `when`, expr `{{=…}}`, variables."""

from __future__ import annotations

import pytest

from punchingfist.engine.depends import parse_depends
from punchingfist.engine.expressions import (
    ExpressionError,
    evaluate_expr,
    evaluate_when,
    parse_expr,
    parse_when,
)
from punchingfist.engine.manifests import parse_duration
from punchingfist.engine.variables import Scope, UnresolvedVariable, check_tag
from punchingfist.errors import InvalidManifest, NotSupportedYet


def holds(depends: str, **phases: str) -> bool:
    return parse_depends(depends, None, where="t").holds(dict(phases))


@pytest.mark.parametrize(
    ("depends", "phases", "expected"),
    [
        ("a", {"a": "Succeeded"}, True),
        ("a", {"a": "Skipped"}, True),  # a bare name is Succeeded || Skipped || Daemoned
        ("a", {"a": "Failed"}, False),
        ("a", {"a": "Omitted"}, False),
        ("a.Failed", {"a": "Failed"}, True),
        ("a.Failed", {"a": "Error"}, False),
        ("a.Errored", {"a": "Error"}, True),
        ("a.Skipped", {"a": "Succeeded"}, False),
        ("a.Omitted", {"a": "Omitted"}, True),
        ("a.Daemoned", {"a": "Succeeded"}, False),
        ("a && b.Failed", {"a": "Succeeded", "b": "Failed"}, True),
        ("a && b.Failed", {"a": "Failed", "b": "Failed"}, False),
        ("(a.Failed || b) && !c.Errored", {"a": "Failed", "b": "Failed", "c": "Succeeded"}, True),
        ("(a.Failed || b) && !c.Errored", {"a": "Failed", "b": "Failed", "c": "Error"}, False),
        ("x-1.Succeeded || x-1.Failed", {"x-1": "Failed"}, True),
    ],
)
def test_depends_follows_argo(depends: str, phases: dict[str, str], expected: bool) -> None:
    assert holds(depends, **phases) is expected


def test_depends_names_its_tasks_and_reads_the_legacy_list() -> None:
    assert parse_depends("(a || b.Failed) && !c", None, where="t").tasks == {"a", "b", "c"}
    legacy = parse_depends(None, ["a", "b"], where="t")
    assert legacy.holds({"a": "Succeeded", "b": "Skipped"})
    assert not legacy.holds({"a": "Succeeded", "b": "Failed"})


@pytest.mark.parametrize(
    ("depends", "error", "words"),
    [
        ("a.Done", InvalidManifest, "unknown task result .Done"),
        ("a &&", InvalidManifest, "ends too early"),
        ("(a || b", InvalidManifest, "missing ')'"),
        ("a ; b", InvalidManifest, "cannot read"),
        ("a.AnySucceeded", NotSupportedYet, "withItems"),
    ],
)
def test_bad_depends_say_why(depends: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_depends(depends, None, where="task x")


def test_depends_and_dependencies_together_are_refused() -> None:
    with pytest.raises(InvalidManifest, match="either"):
        parse_depends("a", ["a"], where="t")


def when(text: str, **values: str) -> bool:
    scope = Scope(dict(values))
    return evaluate_when(
        parse_when(text, where="w"),
        lambda t: scope.substitute(t, where="w"),
        lambda tag: scope.resolve(tag, where="w"),
        where="w",
    )


def test_when_as_the_compiler_emits_it() -> None:
    condition = "'{{tasks.c.outputs.parameters.condition}}' == 'true'"
    both = condition + " && '{{tasks.g.outputs.parameters.approved}}' == 'true'"
    c, g = "tasks.c.outputs.parameters.condition", "tasks.g.outputs.parameters.approved"
    assert when(condition, **{c: "true"})
    assert not when(condition, **{c: "false"})
    assert when(both, **{c: "true", g: "true"})
    assert not when(both, **{c: "true", g: "false"})


def test_when_bare_words_numbers_and_comparisons() -> None:
    assert when("{{workflow.status}} == Succeeded", **{"workflow.status": "Succeeded"})
    assert when("{{workflow.status}} != Succeeded", **{"workflow.status": "Failed"})
    assert when("{{inputs.parameters.n}} > 2", **{"inputs.parameters.n": "3"})
    assert not when("{{inputs.parameters.n}} >= 2.5", **{"inputs.parameters.n": "2"})
    assert when("!(1 == 2) && (true || false)")
    assert not when("'1' == 1"), "a string is not a number (govaluate)"


def test_a_substituted_value_cannot_add_operators() -> None:
    hostile = "x' || 'a' == 'a"
    assert not when("'{{inputs.parameters.v}}' == 'true'", **{"inputs.parameters.v": hostile})
    assert not when("{{inputs.parameters.v}} == true", **{"inputs.parameters.v": "true || true"})


@pytest.mark.parametrize(
    ("text", "words"),
    [("1 < 'a'", "cannot compare"), ("'a' && true", "needs true or false"), ("'a'", "must be")],
)
def test_when_errors_name_the_problem(text: str, words: str) -> None:
    with pytest.raises(ExpressionError, match=words):
        when(text)


def test_expr_nil_coalescing_and_paths() -> None:
    text = "workflow?.outputs?.parameters?.pf_result_x ?? ''"
    node = parse_expr(text, where="e")
    assert evaluate_expr(node, {"workflow": {}}, where="e") == ""
    env = {"workflow": {"outputs": {"parameters": {"pf_result_x": "{}"}}}}
    assert evaluate_expr(node, env, where="e") == "{}"
    indexed = parse_expr("workflow.parameters['my-param'] == 'v' and not false", where="e")
    assert evaluate_expr(indexed, {"workflow": {"parameters": {"my-param": "v"}}}, where="e")
    with pytest.raises(ExpressionError, match="is nil"):
        evaluate_expr(
            parse_expr("workflow.outputs.parameters", where="e"), {"workflow": {}}, where="e"
        )


def test_scope_substitutes_once_and_names_what_is_missing() -> None:
    scope = Scope({"workflow.parameters.event": "{{workflow.name}}", "workflow.name": "run-1"})
    assert scope.substitute("[{{ workflow.parameters.event }}]", where="x") == "[{{workflow.name}}]"
    assert scope.substitute("{{=workflow.name}}", where="x") == "run-1"
    with pytest.raises(UnresolvedVariable, match=r"\{\{tasks.a.outputs.parameters.result\}\}"):
        scope.substitute("{{tasks.a.outputs.parameters.result}}", where="x")


@pytest.mark.parametrize(
    "tag", ["steps.a.outputs.result", "item", "workflow.labels.x", "=sprig.upper('a')"]
)
def test_unsupported_variables_are_named(tag: str) -> None:
    with pytest.raises(NotSupportedYet, match="is not supported yet") as caught:
        check_tag(tag, where="spec.templates[0]")
    assert tag.lstrip("=").split("(")[0] in str(caught.value)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        ("3600", 3600.0),
        ("10s", 10.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, where="d") == seconds


def test_bad_duration() -> None:
    with pytest.raises(InvalidManifest, match="not a duration"):
        parse_duration("ten minutes", where="suspend.duration")
