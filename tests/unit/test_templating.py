"""The template dialect (D1): the design document's syntax, a sandbox, values stay data."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.errors import TemplateRenderError, TemplateSecurityError, TemplateSyntaxError
from punchingfist.templating import compile_expression, compile_template, truthy

DOC_TEMPLATES_FILE = Path(__file__).parents[1] / "fixtures" / "design-document-templates.yaml"
HOSTILE = "$(touch /tmp/pwned) `id` {{ ''.__class__.__mro__ }} {% raw %}"

CONTEXT: dict[str, Any] = {
    "source": {
        "name": "alertmanager-critical",
        "data": {
            "alert": {
                "alertname": "PodCrashLooping",
                "summary": "Pod my-app-pod-xyz is crash looping",
                "labels": {"service": "my-app", "namespace": "production", "severity": "critical"},
            }
        },
    },
    "steps": {
        "agent-investigation": {
            "success": True,
            "result": {
                "can_auto_fix": True,
                "problem_summary": "OOMKilled",
                "fix_command": "kubectl set resources ...",
                "summary": "Memory limit too low",
                "root_cause": "new version needs more heap",
                "escalation_notes": "none",
            },
        },
        "initial-triage": {"success": True, "result": "looked"},
    },
    "outputs": {"auto_fixed": False, "recommendations": "raise the limit"},
    "workflow": {
        "name": "agent-alert-investigation",
        "outputs": {
            "recommendations": "raise the limit",
            "severity-assessment": "high",
            "initial-triage": "triaged",
        },
        "duration": "42s",
        "completedAt": "2026-11-26T10:00:00Z",
    },
    "env": {"PROMETHEUS_URL": "http://prometheus:9090"},
}


def design_document_templates(design: Path) -> list[str]:
    """Every string with `{{` in the design document's YAML blocks, unique and sorted: what
    the fixture holds (the design document lives outside the repository)."""
    found: set[str] = set()
    for block in re.findall(r"```yaml\n(.*?)```", design.read_text(), re.DOTALL):
        for document in yaml.safe_load_all(block):
            found.update(_strings(document))
    return sorted(found)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str) and "{{" in value:
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


DOC_TEMPLATES: list[str] = yaml.safe_load(DOC_TEMPLATES_FILE.read_text())


def test_the_fixture_holds_the_design_documents_templates() -> None:
    assert len(DOC_TEMPLATES) >= 15
    assert all(isinstance(source, str) and "{{" in source for source in DOC_TEMPLATES)


@pytest.mark.parametrize("source", DOC_TEMPLATES, ids=lambda s: s.strip()[:40])
def test_every_design_document_template_parses_and_renders(source: str) -> None:
    rendered = compile_template(source).render(CONTEXT)
    assert "{{" not in rendered


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Alert: {{ .source.data.alert.alertname }}", "Alert: PodCrashLooping"),
        (
            "{{ .source.data.alert.labels | toJSON }}",
            '{"service": "my-app", "namespace": "production", "severity": "critical"}',
        ),
        ("{{ .steps.agent-investigation.result.problem_summary }}", "OOMKilled"),
        ("{{ .workflow.outputs.severity-assessment }}", "high"),
        ("{{ .workflow.outputs.initial-triage }}", "triaged"),
        ("{{ .env.PROMETHEUS_URL }}", "http://prometheus:9090"),
        ("{{ source.data.alert.alertname }}", "PodCrashLooping"),
        ("{{ .steps.missing-step.success | default false }}", "False"),
        ('{{ .source.data.alert.labels.team | default "platform" | upper }}', "PLATFORM"),
        ("{% if .outputs.auto_fixed %}fixed{% else %}escalate{% endif %}", "escalate"),
        ("{{ .source.data.alert.labels.severity == 'critical' }}", "True"),
    ],
)
def test_renders_as_intended(source: str, expected: str) -> None:
    assert compile_template(source).render(CONTEXT) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ .steps.agent-investigation.result.can_auto_fix }}", True),
        ("{{ not .outputs.auto_fixed }}", True),
        ("{{ .steps.resolution-attempt.success | default false }}", False),
        ("{{ .outputs.auto_fixed }}", False),
        ("result: {{ .outputs.auto_fixed }}", True),  # text, not a lone expression
    ],
)
def test_conditions(source: str, expected: bool) -> None:
    assert compile_template(source).is_true(CONTEXT) is expected


@pytest.mark.parametrize("word", ["false", "False", "no", "0", "", "  none "])
def test_false_words(word: str) -> None:
    assert truthy(word) is False
    assert truthy("yes") and truthy("true") and truthy(1)


def test_rendered_values_are_never_rendered_again() -> None:
    context = {"source": {"data": {"alert": {"alertname": HOSTILE}}}}
    template = compile_template('echo "Alert: {{ .source.data.alert.alertname }}"')
    assert template.render(context) == f'echo "Alert: {HOSTILE}"'


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ .source.__init__ }}",
        "{{ source['__class__'] }}",
        "{{ _private }}",
        '{% include "x" %}',
        '{% import "x" as y %}',
    ],
)
def test_sandbox_escapes_are_refused_at_parse_time(source: str) -> None:
    with pytest.raises(TemplateSecurityError):
        compile_template(source)


def test_sandbox_refuses_unsafe_calls_at_render_time() -> None:
    with pytest.raises(TemplateRenderError):
        compile_template("{{ 'x' * 10000000 }}").render({})
    with pytest.raises(TemplateRenderError):
        compile_template("{{ 2 ** 100000 }}").render({})
    data: dict[str, Any] = {"a": 1}
    with pytest.raises(TemplateRenderError, match="sandbox"):
        compile_template("{{ source.data.clear() }}").render({"source": {"data": data}})
    assert data == {"a": 1}


def test_undefined_values_are_errors_unless_defaulted() -> None:
    with pytest.raises(TemplateRenderError, match="default"):
        compile_template("{{ .source.data.alert.nothing }}").render(CONTEXT)
    with pytest.raises(TemplateRenderError):
        compile_template("{{ not .steps.missing.success }}").is_true(CONTEXT)


def test_errors_name_resource_field_line_and_column() -> None:
    source = "first line\n  second {{ .steps.a | }}"
    with pytest.raises(TemplateSyntaxError) as caught:
        compile_template(source, resource="Workflow/wf", field="spec.steps[0].goal")
    error = caught.value
    assert (error.resource, error.field, error.line, error.column) == (
        "Workflow/wf",
        "spec.steps[0].goal",
        2,
        10,
    )
    assert str(error).startswith("Workflow/wf: spec.steps[0].goal: line 2, column 10: ")


def test_unknown_filter_suggests_the_right_one() -> None:
    with pytest.raises(TemplateSyntaxError, match="did you mean 'toJSON'"):
        compile_template("{{ .a | toJSN }}")


def test_unclosed_block() -> None:
    with pytest.raises(TemplateSyntaxError, match="never closed") as caught:
        compile_template("ok\nthen {{ .a")
    assert (caught.value.line, caught.value.column) == (2, 6)


def test_references_are_found_for_the_compiler() -> None:
    template = compile_template(
        "{{ .steps.agent-investigation.result.x }} {{ .env.A | default(.source.y) }}"
        "{% for item in .steps.other.result %}{{ item.name }}{% endfor %}"
    )
    assert ("steps", "agent-investigation", "result", "x") in template.references
    assert ("steps", "other", "result") in template.references
    assert template.roots == {"steps", "env", "source", "item"}


def test_bare_expression_for_trigger_conditions() -> None:
    expression = compile_expression("severity == 'critical'")
    assert expression.is_true({"severity": "critical"})
    assert not expression.is_true({"severity": "warning"})


if __name__ == "__main__":  # refresh the fixture: see its header

    class _Literal(yaml.SafeDumper):
        """Multi-line templates as literal blocks, so the fixture reads like the document."""

    _Literal.add_representer(
        str,
        lambda dumper, value: dumper.represent_scalar(
            "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
        ),
    )
    header = DOC_TEMPLATES_FILE.read_text().partition("\n- ")[0]
    templates = design_document_templates(Path(sys.argv[1]))
    body = yaml.dump(templates, Dumper=_Literal, width=1000, allow_unicode=True)
    DOC_TEMPLATES_FILE.write_text(header + "\n" + body)
