"""`punchingfist approve`: answer a run's approval gate, on the cluster or through the server.

The gate of a remediation step has a preview of its fix (the action, the target, the dry run's
diff, RBAC, the resourceVersion): it is printed before the answer is sent (`--show` prints it
and answers nothing), and a fix that is not offered cannot be approved.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from punchingfist.api.actions import Preview
from punchingfist.cli.exit_codes import EXIT_OK
from punchingfist.compiler.naming import (
    PREVIEW_PARAM,
    RESULT_PARAM,
    approval_task,
    preview_task,
    rollback_task,
)
from punchingfist.errors import PunchingFistError
from punchingfist.kube import context_namespace
from punchingfist.runtime.sinks.previews import (
    gate_text,
    parse_preview,
    rollback_text,
    why_not_offered,
)

if TYPE_CHECKING:
    from punchingfist.executors.argo import ArgoExecutor


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approve = commands.add_parser(
        "approve",
        help="answer a run's approval gate (approve, or deny with --deny)",
        description=(
            "Answer the approval gate of a run. With --server, through the server's REST API "
            "(recorded there). Otherwise directly against the cluster: the suspend node is "
            "resumed as `argo node set` + `argo resume` do, with the approver being the "
            "Kubernetes user of the credentials (checked against an OperatorConfig's "
            "spec.approvals.approvers in the namespace, when one lists approvers); the run "
            "tracker records the answer from the node."
        ),
    )
    approve.add_argument("run", metavar="RUN", help="the run (Argo Workflow) name")
    approve.add_argument(
        "--step", metavar="NAME", help="the gated step (default: the one gate the run waits at)"
    )
    approve.add_argument("--deny", action="store_true", help="deny instead of approving")
    approve.add_argument(
        "--show",
        action="store_true",
        help="print the gate's preview of the fix (diff, RBAC, resourceVersion) and answer nothing",
    )
    approve.add_argument("--comment", default="", help="a note kept with the decision")
    where = approve.add_mutually_exclusive_group()
    where.add_argument(
        "--server", metavar="URL", help="the Punching Fist server, e.g. http://punchingfist:8080"
    )
    where.add_argument("--kubeconfig", help="default: in-cluster, else ~/.kube/config")
    approve.add_argument(
        "--approver",
        help="who decides, with --server and the embedded API token (otherwise the server "
        "knows who the token is and this must match it)",
    )
    approve.add_argument(
        "--token-file",
        metavar="PATH",
        help="with --server: the bearer token to send (default: $PUNCHINGFIST_TOKEN, else "
        "$PUNCHINGFIST_APPROVER_TOKEN)",
    )
    approve.add_argument(
        "-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)"
    )
    approve.set_defaults(handler=_approve)


def _approve(args: argparse.Namespace) -> int:
    if args.server:
        return _approve_by_server(args)
    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.runs.dispatching import SubmitError

    namespace = args.namespace or context_namespace(args.kubeconfig)
    argo = ArgoExecutor(args.kubeconfig)
    try:
        gate = _gate(args.run, args.step, argo.waiting_gates(args.run, namespace))
        if _shown(args, gate, *_cluster_preview(argo, args.run, namespace, gate)):
            return EXIT_OK
        approver = argo.whoami()
        allowed = _approvers(argo, namespace)
        if allowed and approver not in allowed:
            raise PunchingFistError(
                f"{approver!r} may not answer approval gates: the OperatorConfig of namespace "
                f"{namespace!r} lists spec.approvals.approvers"
            )
        argo.resume(
            args.run,
            namespace,
            gate,
            approved=not args.deny,
            approver=approver,
            comment=args.comment,
        )
    except SubmitError as error:
        raise PunchingFistError(str(error)) from error
    print(f"{'denied' if args.deny else 'approved'}: {args.run} / {gate} (as {approver})")
    return EXIT_OK


def _shown(args: argparse.Namespace, gate: str, preview: Preview | None, fixed: Any = None) -> bool:
    """Print the gate's preview (or, at a rollback gate, what the failed fix `fixed` — its
    task's result — did and what the rollback puts back); True when that is all to do
    (`--show`). Approving a fix that is not offered is refused here, before anything is sent."""
    undo = rollback_text(fixed) if _rolled_back_step(gate) else None
    if preview is not None:
        print(gate_text(args.run, gate, preview))
    elif undo is not None:
        print(f"{args.run} / {gate}: the rollback to approve\n{undo}")
    elif args.show:
        print(f"{args.run} / {gate}: no preview (this gate does not gate a remediation fix)")
    if args.show:
        return True
    why = why_not_offered(preview) if preview is not None and not args.deny else None
    if why is not None:
        raise PunchingFistError(f"the fix is not offered, so it cannot be approved: {why}")
    return False


def _cluster_preview(
    argo: ArgoExecutor, run: str, namespace: str, gate: str
) -> tuple[Preview | None, Any]:
    """What the gate shows, from one read of the Argo Workflow's nodes: the preview task's
    output of the gated step, and at a rollback gate the failed fix task's result."""
    nodes = list(((argo.get(run, namespace).get("status") or {}).get("nodes") or {}).values())
    task = preview_task(gate.removesuffix("-approval"))
    shown = next(
        (
            found
            for name in (PREVIEW_PARAM, RESULT_PARAM)
            for value in _outputs(nodes, task, name)
            if (found := parse_preview(value)) is not None
        ),
        None,
    )
    step = _rolled_back_step(gate)
    fixed = next(_outputs(nodes, step, RESULT_PARAM), None) if step else None
    return shown, fixed


def _outputs(nodes: list[dict[str, Any]], task: str, name: str) -> Iterator[Any]:
    """The JSON of output parameter `name` of each node of task `task` (as the Argo UI names
    it) that has it and holds JSON."""
    import json

    for node in nodes:
        if node.get("displayName") != task:
            continue
        for parameter in (node.get("outputs") or {}).get("parameters") or []:
            if parameter.get("name") == name:
                try:
                    yield json.loads(parameter.get("value") or "null")
                except ValueError:
                    continue


def _rolled_back_step(gate: str) -> str | None:
    """The remediation step whose rollback gate (onFailure ask) `gate` is, else None."""
    suffix = approval_task(rollback_task(""))  # `-rollback-approval`
    return gate.removesuffix(suffix) if gate.endswith(suffix) and gate != suffix else None


def _gate(run: str, step: str | None, waiting: list[str]) -> str:
    """The gate to answer: `<step>-approval`, or the only one the run waits at."""
    if step:
        gate = f"{step}-approval"
        if gate not in waiting:
            at = ", ".join(waiting) or "no gate"
            raise PunchingFistError(f"run {run} is not waiting at {gate!r} (it waits at {at})")
        return gate
    if len(waiting) != 1:
        at = ", ".join(w.removesuffix("-approval") for w in waiting)
        raise PunchingFistError(
            f"run {run} waits at no approval gate"
            if not waiting
            else f"run {run} waits at several gates; pick one with --step ({at})"
        )
    return waiting[0]


def _approvers(argo: ArgoExecutor, namespace: str) -> set[str]:
    """Approvers listed by the OperatorConfigs of the namespace (empty: RBAC decides)."""
    from punchingfist.api import API_VERSION
    from punchingfist.kube import KubeForbidden, KubeNotFound

    try:
        items = argo.kube.list_objects(API_VERSION, "operatorconfigs", namespace)
    except (KubeForbidden, KubeNotFound):  # no CRD, or no right to read it: RBAC decides
        return set()
    names: set[str] = set()
    for item in items:
        approvals = (item.get("spec") or {}).get("approvals") or {}
        names |= {str(n) for n in approvals.get("approvers") or []}
    return names


def server_token(args: argparse.Namespace) -> str:
    """The bearer token for the server's API: `--token-file`, else $PUNCHINGFIST_TOKEN; empty
    when neither is given."""
    if args.token_file:
        try:
            return Path(args.token_file).expanduser().read_text().strip()
        except OSError as error:
            raise PunchingFistError(f"--token-file: {error}") from error
    return (os.environ.get("PUNCHINGFIST_TOKEN") or "").strip()


def _approve_by_server(args: argparse.Namespace) -> int:
    import httpx

    token = server_token(args) or (os.environ.get("PUNCHINGFIST_APPROVER_TOKEN") or "").strip()
    if not token:
        raise PunchingFistError(
            "the server needs credentials: give --token-file PATH (the server's api-token file "
            "in embedded mode) or set $PUNCHINGFIST_TOKEN (a Kubernetes token in the cluster, "
            "e.g. `kubectl create token NAME`) or $PUNCHINGFIST_APPROVER_TOKEN"
        )
    approver = args.approver
    base = args.server.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
            gate = f"{args.step}-approval" if args.step else None
            if gate is None:
                found = http.get(f"/api/v1/runs/{args.run}")
                _check(found, args.run)
                waiting = [
                    a["gate"]
                    for a in found.json().get("approvals", [])
                    if a.get("decision") == "pending"
                ]
                gate = _gate(args.run, None, waiting)
            fixed = _server_fix_result(http, args.run, gate)
            if _shown(args, gate, _server_preview(http, args.run, gate), fixed):
                return EXIT_OK
            body = {"decision": "deny" if args.deny else "approve", "comment": args.comment}
            if approver:
                body["approver"] = approver
            answer = http.post(f"/api/v1/runs/{args.run}/approvals/{gate}", json=body)
            _check(answer, args.run)
    except httpx.HTTPError as error:
        raise PunchingFistError(f"cannot reach the server at {base}: {error}") from error
    record = answer.json()
    print(f"{record['decision']}: {args.run} / {gate} (as {record['approver']})")
    return EXIT_OK


def _server_preview(http: Any, run: str, gate: str) -> Preview | None:
    """The gate's preview as the server has it (a server without the endpoint: none)."""
    found = http.get(f"/api/v1/runs/{run}/approvals/{gate}")
    if found.status_code == 404:
        return None
    _check(found, run)
    return parse_preview(found.json().get("preview"))


def _server_fix_result(http: Any, run: str, gate: str) -> Any:
    """At a rollback gate: the failed fix task's result as the server recorded it."""
    task = _rolled_back_step(gate)
    if task is None:
        return None
    found = http.get(f"/api/v1/runs/{run}")
    _check(found, run)
    steps = [s for s in found.json().get("steps") or [] if s.get("name") == task]
    return steps[0].get("result") if steps else None


def _check(response: Any, run: str) -> None:
    if response.status_code >= 400:
        try:
            message = response.json().get("error") or response.text
        except ValueError:
            message = response.text
        raise PunchingFistError(f"the server refused ({response.status_code}): {message}")
