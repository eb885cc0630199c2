"""Workflow (+ Sinks, OperatorConfig) -> Argo WorkflowTemplate via Hera. Pure: no I/O."""

from punchingfist.compiler.compiling import (
    CompiledWorkflow,
    Defaults,
    compile_resources,
    compile_workflow,
)

__all__ = ["CompiledWorkflow", "Defaults", "compile_resources", "compile_workflow"]
