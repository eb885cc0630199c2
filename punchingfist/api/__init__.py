"""CRD spec models (`punchingfist.io/v1alpha1`): the single source of truth for crds/."""

from punchingfist.api.base import API_VERSION, GROUP, VERSION, SecretKeyRef
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.resources import (
    KINDS,
    Metadata,
    OperatorConfig,
    Resource,
    Sink,
    Source,
    Workflow,
    load_documents,
    load_resources,
    parse_resource,
)
from punchingfist.api.sinks import SinkSpec
from punchingfist.api.sources import SourceSpec
from punchingfist.api.workflows import (
    AgentStep,
    CliStep,
    ConditionalStep,
    Output,
    SinkRef,
    Step,
    Tool,
    WorkflowSpec,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "AgentStep",
    "CliStep",
    "ConditionalStep",
    "Metadata",
    "OperatorConfig",
    "OperatorConfigSpec",
    "Output",
    "Resource",
    "SecretKeyRef",
    "Sink",
    "SinkRef",
    "SinkSpec",
    "Source",
    "SourceSpec",
    "Step",
    "Tool",
    "Workflow",
    "WorkflowSpec",
    "load_documents",
    "load_resources",
    "parse_resource",
]
