"""Remediation steps (#25): preview a typed fix for the approver (server-side dry run, diff,
RBAC), apply it guarded by the previewed resourceVersion, check it, roll it back on failure.

Everything goes through the kubectl binary (`runtime.tools.base.run_argv`): the runtime never
imports a Kubernetes client library.
"""

from punchingfist.runtime.remediation.steps import apply, preview, rollback

__all__ = ["apply", "preview", "rollback"]
