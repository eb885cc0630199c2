"""kubectl for a remediation: read, server-side dry run, guarded patch, delete, can-i, rollout
status; every call through `run_argv` (no shell, no kubernetes library), its argv printed."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from punchingfist.api.actions import Access, AnyAction, Target, required_access
from punchingfist.runtime.tools.base import ToolResult, run_argv

_NO_CAP = 10**7


class KubeError(Exception):
    """kubectl failed; `conflict` when the API server answered 409 (the object changed)."""

    def __init__(self, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.conflict = conflict


@dataclass(frozen=True)
class Kube:
    env: Mapping[str, str]
    binary: str = "kubectl"
    timeout: float = 60.0

    def _run(self, args: list[str], *, timeout: float | None = None, quiet: bool = False) -> str:
        if not quiet:
            print(f"  $ kubectl {' '.join(args)}")
            sys.stdout.flush()
        result: ToolResult = run_argv(
            [self.binary, *args], timeout=timeout or self.timeout, env=self.env, max_tokens=_NO_CAP
        )
        if result.status != "ok":
            message = (result.error or result.status).strip()
            conflict = "Conflict" in message or "the object has been modified" in message
            conflict = conflict or "testing value /metadata" in message
            raise KubeError(message, conflict=conflict)
        return result.output

    def _json(self, args: list[str], **kwargs: Any) -> dict[str, Any]:
        output = self._run([*args, "--output=json"], **kwargs)
        try:
            value = json.loads(output)
        except ValueError as error:
            raise KubeError(f"kubectl answered with something not JSON: {error}") from error
        if not isinstance(value, dict):
            raise KubeError("kubectl answered with something not a JSON object")
        return value

    def whoami(self) -> str | None:
        """The user the API server sees for this kubectl (a SelfSubjectReview, which every
        account may make): the step's ServiceAccount in a pod, the kubeconfig's user (or whom
        it impersonates) elsewhere; None when the server cannot say."""
        try:
            review = self._json(["auth", "whoami"], quiet=True)
        except KubeError:
            return None
        user = ((review.get("status") or {}).get("userInfo") or {}).get("username")
        return user if isinstance(user, str) and user else None

    def get(self, target: Target, *, quiet: bool = False) -> dict[str, Any]:
        return self._json(["get", *target.kubectl()], quiet=quiet)

    def list(self, kind: str, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind.lower(), f"--namespace={namespace}"]
        if selector:
            args.append(f"--selector={selector}")
        return list(self._json(args, quiet=True).get("items") or [])

    def patch(self, target: Target, kind: str, body: Any, *, dry_run: bool) -> dict[str, Any]:
        """Patch the object (`kind` strategic, merge or json); a dry run on the API server
        (`dryRun=All`: admission and validation run, nothing is stored) answers the would-be
        object."""
        args = ["patch", *target.kubectl(), f"--type={kind}", f"--patch={json.dumps(body)}"]
        if dry_run:
            args.append("--dry-run=server")
        return self._json(args)

    def delete(self, target: Target, *, dry_run: bool) -> None:
        args = ["delete", *target.kubectl(), "--wait=false"]
        if dry_run:
            args.append("--dry-run=server")
        self._run(args)

    def can_i(self, access: Access) -> tuple[bool, str]:
        """Whether this pod's own account (the remediator) may make the request: kubectl auth
        can-i asks the API server (a SelfSubjectAccessReview, which every account may make)."""
        args = ["auth", "can-i", access.verb, access.object()]
        if access.namespace:
            args.append(f"--namespace={access.namespace}")
        print(f"  $ kubectl {' '.join(args)}")
        result = run_argv([self.binary, *args], timeout=self.timeout, env=self.env)
        answer = (result.output or "").strip()
        if answer == "yes":
            return True, ""
        if answer == "no":
            return False, f"RBAC does not allow {access}"
        raise KubeError(f"kubectl auth can-i failed: {result.error or answer}")

    def may_apply(self, action: AnyAction) -> tuple[bool, str]:
        """Whether the remediator may make every request previewing, applying, checking and
        rolling back `action` needs (`required_access`); the reason names the first it may
        not make."""
        for access in required_access(action):
            allowed, reason = self.can_i(access)
            if not allowed:
                return False, reason
        return True, ""

    def rollout_status(self, target: Target, timeout_seconds: int) -> tuple[bool, str]:
        """Wait for the workload's rollout to complete (True) or the timeout (False)."""
        args = [
            "rollout",
            "status",
            *target.kubectl(),
            "--watch=true",
            f"--timeout={timeout_seconds}s",
        ]
        try:
            output = self._run(args, timeout=timeout_seconds + 30)
        except KubeError as error:
            return False, error.message
        return True, output.strip().splitlines()[-1] if output.strip() else "rolled out"
