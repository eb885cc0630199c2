"""The local engine (embedded mode, D11): run a compiled Argo WorkflowTemplate on this machine."""

from punchingfist.engine.approvals import (
    ApprovalDecision,
    ApprovalRequest,
    Approver,
    AutoApprover,
    PollingApprover,
    PromptApprover,
)
from punchingfist.engine.manifests import Plan, read_manifest
from punchingfist.engine.observing import (
    Observers,
    PrintingObserver,
    RunObserver,
    SilentObserver,
)
from punchingfist.engine.results import NodeStatus, RunInfo, RunResult
from punchingfist.engine.running import (
    run_workflow,
    run_workflow_async,
    secrets_from_documents,
)

__all__ = [
    "ApprovalDecision",
    "ApprovalRequest",
    "Approver",
    "AutoApprover",
    "NodeStatus",
    "Observers",
    "Plan",
    "PollingApprover",
    "PrintingObserver",
    "PromptApprover",
    "RunInfo",
    "RunObserver",
    "RunResult",
    "SilentObserver",
    "read_manifest",
    "run_workflow",
    "run_workflow_async",
    "secrets_from_documents",
]
