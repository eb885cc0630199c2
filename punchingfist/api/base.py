"""Shared building blocks of the CRD spec models: the strict base model, names, durations."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "punchingfist.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d))+$")


class SpecModel(BaseModel):
    """Base of everything a user writes: camelCase keys, unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        use_attribute_docstrings=True,
    )

    def dump(self) -> dict[str, Any]:
        """The model as the user would write it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes object name: use lowercase letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )
    return value


def _duration(value: str) -> str:
    if not _DURATION.match(value):
        raise ValueError(f"{value!r} is not a duration: write e.g. '30s', '5m', '1h' or '1h30m'")
    return value


DNSLabel = Annotated[str, AfterValidator(_dns_label)]
"""A Kubernetes DNS-1123 label: step names, ServiceAccount names."""

ObjectName = Annotated[str, AfterValidator(_dns_subdomain)]
"""A Kubernetes object name (DNS-1123 subdomain)."""

_REFERENCE = re.compile(r"^(vault|aws|azure|k8s|env)://\S+$")


def _secret_name(value: str) -> str:
    if "://" in value:
        if not _REFERENCE.match(value):
            raise ValueError(
                f"{value!r} is not a secret reference: write vault://PATH#KEY, aws://NAME#KEY, "
                "azure://VAULT/NAME, k8s://NAMESPACE/NAME#KEY or env://NAME"
            )
        return value
    return _dns_subdomain(value)


SecretName = Annotated[str, AfterValidator(_secret_name)]
"""A Kubernetes Secret's name, or a secret reference (`vault://PATH#KEY`, `aws://NAME#KEY`,
`azure://VAULT/NAME`, `k8s://NAMESPACE/NAME#KEY`, `env://NAME`; punchingfist.secrets)."""

Duration = Annotated[
    str, AfterValidator(_duration), Field(json_schema_extra={"pattern": _DURATION.pattern})
]
"""A duration such as ``30s``, ``5m``, ``1h`` or ``1h30m``."""

TemplateString = Annotated[str, Field(json_schema_extra={"x-punchingfist-template": True})]
"""A string in the template dialect (D1); checked by the compiler, rendered by the runtime."""

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(value: str) -> float:
    """Seconds in a duration string that passed validation."""
    return sum(
        int(amount) * DURATION_UNITS[unit]
        for amount, unit in re.findall(r"(\d+)(ms|s|m|h|d)", value)
    )


class SecretKeyRef(SpecModel):
    """A key of a Kubernetes Secret in the workflow's namespace, or a secret reference."""

    secret_ref: SecretName
    """Name of the Kubernetes Secret, or a reference to a secret elsewhere:
    `vault://PATH#KEY`, `aws://NAME#KEY`, `azure://VAULT/NAME`, `k8s://NAMESPACE/NAME#KEY`,
    `env://NAME` (docs/operations.md, "Secrets from Vault, AWS and Azure")."""
    key: str = "token"
    """Key inside the Secret's data (a reference names its key after '#'; another `key` beside
    a reference is refused)."""

    @model_validator(mode="after")
    def _key_in_reference(self) -> SecretKeyRef:
        if "://" in self.secret_ref and self.key != "token":
            raise ValueError(
                f"secretRef {self.secret_ref!r} is a reference: write its key after '#' "
                "(vault://PATH#KEY) and remove `key`"
            )
        return self


class Condition(BaseModel):
    """A status condition, as `kubectl wait --for=condition=Ready` reads it."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    observed_generation: int | None = None


class ResourceStatus(BaseModel):
    """Status written by the controller. Users never write it; the CRD's status subresource."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    observed_generation: int | None = None
    """The metadata.generation the controller last acted on."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready and other conditions, newest state per type."""
