"""Generate the CustomResourceDefinitions in crds/ from the spec models (never edit by hand).

pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: references inlined,
`type` unions merged into one object (with `type` as an enum), fields that take a name or an
object marked `x-kubernetes-preserve-unknown-fields`, defaults moved into descriptions (the
models apply them, so `kubectl get -o yaml` shows what the user wrote).
"""

from __future__ import annotations

from typing import Any

import yaml

from punchingfist.api.base import GROUP, VERSION
from punchingfist.api.resources import KINDS

_READY = '.status.conditions[?(@.type=="Ready")].status'
_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Source": [
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Workflow", "type": "string", "jsonPath": ".spec.triggerWorkflow"},
    ],
    "Workflow": [
        {"name": "Steps", "type": "integer", "jsonPath": ".status.stepCount"},
        {
            "name": "Template",
            "type": "string",
            "jsonPath": ".status.templateName",
            "description": "The Argo WorkflowTemplate compiled from this Workflow.",
        },
    ],
    "Sink": [{"name": "Type", "type": "string", "jsonPath": ".spec.type"}],
    "OperatorConfig": [],
}
_SHORT_NAMES = {
    "Source": ["pfsource", "pfsrc"],
    "Workflow": ["pfworkflow", "pfwf"],
    "Sink": ["pfsink"],
    "OperatorConfig": ["pfconfig"],
}
_DESCRIPTIONS = {
    "Source": "Source starts investigations: an Alertmanager webhook, a chat command, a schedule, "
    "an API call or a Kubernetes event, each naming the Workflow to run.",
    "Workflow": "Workflow declares an investigation: cli, agent and conditional steps (optionally "
    "behind approval gates), outputs and sinks. It is compiled into an Argo WorkflowTemplate "
    "of the same name.",
    "Sink": "Sink is where a workflow's result goes: Slack, Alertmanager, PagerDuty, Jira, a "
    "Prometheus Pushgateway, another Workflow or a webhook.",
    "OperatorConfig": "OperatorConfig holds operator-wide settings: database, chat, LLM "
    "providers, runbooks, secret manager and secrets.",
}
# CEL rules the API server checks on `kubectl apply`: what the merged `type` unions lose.
_RULES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "Source": {
        "spec": [
            (
                "self.type != 'schedule' || (has(self.config) && has(self.config.cron))",
                "a schedule Source needs spec.config.cron, e.g. '0 2 * * *'",
            ),
            (
                "self.type != 'kubernetes' || (has(self.config) && has(self.config.resource))",
                "a kubernetes Source needs spec.config.resource, e.g. 'pods'",
            ),
        ],
    },
    "Workflow": {
        "steps[]": [
            ("self.type != 'cli' || has(self.command)", "a cli step needs `command`"),
            ("self.type != 'agent' || has(self.goal)", "an agent step needs `goal`"),
            (
                "self.type != 'conditional' || (has(self.condition) && has(self.agent) != "
                "has(self.cli))",
                "a conditional step needs `condition` and exactly one of `agent` or `cli`",
            ),
            (
                "!(has(self.policy) && has(self.rigConfig))",
                "write either `policy` or `rigConfig` (its older name), not both",
            ),
        ],
    },
    "Sink": {
        "spec": [
            (
                "self.type != 'prometheus' || (has(self.config) && has(self.config.pushgateway))",
                "a prometheus Sink needs spec.config.pushgateway",
            ),
            (
                "self.type != 'jira' || (has(self.config) && has(self.config.project) && "
                "has(self.config.endpoint))",
                "a jira Sink needs spec.config.project and spec.config.endpoint",
            ),
            (
                "self.type != 'workflow' || (has(self.config) && has(self.config.workflowName))",
                "a workflow Sink needs spec.config.workflowName",
            ),
            (
                "self.type != 'webhook' || (has(self.config) && has(self.config.url))",
                "a webhook Sink needs spec.config.url",
            ),
            (
                "self.type != 'pagerduty' || (has(self.config) && (has(self.config.routingKey) || "
                "has(self.config.routingKeySecret)))",
                "a pagerduty Sink needs spec.config.routingKeySecret (or routingKey)",
            ),
        ],
    },
}
_STATUS = {
    "type": "object",
    "description": "Written by the controller.",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the controller last acted on.",
        },
        "stepCount": {"type": "integer", "description": "Workflow: number of steps."},
        "templateName": {
            "type": "string",
            "description": "Workflow: the compiled Argo WorkflowTemplate.",
        },
        "conditions": {
            "type": "array",
            "description": "Ready and other conditions.",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status"],
                "properties": {
                    "type": {"type": "string"},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "reason": {"type": "string"},
                    "message": {"type": "string"},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                    "observedGeneration": {"type": "integer", "format": "int64"},
                },
            },
        },
    },
}


def plural(kind: str) -> str:
    return kind.lower() + "s"


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    _, adapter = KINDS[kind]
    raw = adapter.json_schema(by_alias=True, mode="validation")
    spec_schema = _structural(raw, raw.get("$defs", {}))
    spec_schema["description"] = _DESCRIPTIONS[kind]
    for path, rules in _RULES.get(kind, {}).items():
        target = spec_schema
        for part in path.split(".") if path != "spec" else []:
            target = target["properties"][part.removesuffix("[]")]
            if part.endswith("[]"):
                target = target["items"]
        target["x-kubernetes-validations"] = [
            {"rule": rule, "message": message} for rule, message in rules
        ]
    columns = [
        *_COLUMNS[kind],
        {"name": "Ready", "type": "string", "jsonPath": _READY},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural(kind)}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural(kind),
                "singular": kind.lower(),
                "shortNames": _SHORT_NAMES[kind],
                "categories": ["punchingfist"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _DESCRIPTIONS[kind],
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _STATUS,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name -> YAML text of every CRD, as `punchingfist crds` writes them."""
    return {
        f"{GROUP}_{plural(kind)}.yaml": "# Generated by `punchingfist crds`. Do not edit.\n"
        + yaml.safe_dump(crd(kind), sort_keys=False, width=100)
        for kind in KINDS
    }


def _structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema = _resolve(schema, defs)
    description = " ".join(schema["description"].split()) if schema.get("description") else None
    if schema.get("default") is not None and not isinstance(schema["default"], (dict, list)):
        default = schema["default"]
        text = f"Default: {_scalar(default)}."
        description = f"{description} {text}" if description else text
    if schema.get("x-punchingfist-name-or-object"):
        return _loose(description, "A name, or an object with more settings")
    variants = schema.get("oneOf") or schema.get("anyOf")
    if variants is not None:
        variants = [_resolve(v, defs) for v in variants if v.get("type") != "null"]
        if len(variants) == 1:
            return _structural({**variants[0], **_keep(schema, "description", "default")}, defs)
        if all(v.get("type") == "object" and "properties" in v for v in variants):
            merged = _merge([_structural(v, defs) for v in variants])
            if description:
                merged["description"] = description
            return merged
        return _loose(description, None)
    out: dict[str, Any] = {}
    if description:
        out["description"] = description
    kind = schema.get("type")
    if "const" in schema:
        out.update({"type": "string", "enum": [schema["const"]]})
        return out
    if "enum" in schema:
        out.update({"type": kind or "string", "enum": list(schema["enum"])})
        return out
    if kind == "object" or "properties" in schema:
        out["type"] = "object"
        if "properties" in schema:
            out["properties"] = {
                name: _structural(value, defs) for name, value in schema["properties"].items()
            }
            if schema.get("required"):
                out["required"] = list(schema["required"])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            value = _structural(extra, defs)
            if value.get("x-kubernetes-preserve-unknown-fields") and "type" not in value:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out["additionalProperties"] = value
        elif "properties" not in schema:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out
    if kind == "array":
        out["type"] = "array"
        out["items"] = _structural(schema.get("items", {}), defs)
        for key in ("minItems", "maxItems"):
            if key in schema:
                out[key] = schema[key]
        return out
    if kind in ("string", "integer", "number", "boolean"):
        out["type"] = kind
        for key in ("pattern", "minLength", "maxLength", "minimum", "maximum", "format"):
            if key in schema:
                out[key] = schema[key]
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if key in schema:
                out[bound] = schema[key]
                out[key] = True
        return out
    return _loose(description, None)


def _loose(description: str | None, prefix: str | None) -> dict[str, Any]:
    text = " ".join(part for part in (prefix and prefix + ".", description) if part)
    out: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
    if text:
        out["description"] = text
    return out


def _merge(variants: list[dict[str, Any]]) -> dict[str, Any]:
    """One object schema accepting every variant: properties united, `required` intersected."""
    properties: dict[str, Any] = {}
    for variant in variants:
        for name, value in variant.get("properties", {}).items():
            if name not in properties:
                properties[name] = value
            elif properties[name] != value:
                properties[name] = _merge_property(properties[name], value)
    required = set(variants[0].get("required", []))
    for variant in variants[1:]:
        required &= set(variant.get("required", []))
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = [name for name in variants[0].get("required", []) if name in required]
    return out


def _merge_property(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    if "enum" in left and "enum" in right and left.get("type") == right.get("type"):
        merged = dict(left)
        merged["enum"] = left["enum"] + [v for v in right["enum"] if v not in left["enum"]]
        merged["description"] = "One of: " + ", ".join(merged["enum"]) + "."
        return merged
    if left.get("type") == "object" and right.get("type") == "object":
        merged = _merge([left, right])
        merged.pop("required", None)
        merged["description"] = (
            "Settings for the chosen `type`; each field's description says what it is for."
        )
        return merged
    if left.get("type") == right.get("type"):
        return {k: v for k, v in left.items() if k != "description"} | (
            {"description": left["description"]} if "description" in left else {}
        )
    return _loose(left.get("description"), None)


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _keep(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: schema[key] for key in keys if key in schema}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value}`" if isinstance(value, str) else str(value)
