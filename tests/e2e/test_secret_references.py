"""e2e: the Argo executor resolves a run's secret references into the run's own Secret, on the
real control plane (kube-apiserver, etcd, Argo's workflow-controller; no kubelet).

The operator reads the references of the template (`env://` of its own environment, `k8s://`
of a Secret in another namespace) when it submits a run, applies Secret `<run>-secrets` owned
by the Argo Workflow, and Argo's controller creates the step pods with `secretKeyRef`s naming
that Secret (it fills in `{{workflow.name}}`). A reference that cannot be read is a permanent
submit error naming it, and neither the Workflow nor the Secret is created. With Vault's
Kubernetes auth the operator logs in with its ServiceAccount token, reviewed by our API server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from punchingfist.api import load_resources
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.compiler import compile_resources
from punchingfist.compiler.credentials import reference_key
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from punchingfist.secrets import SecretError, SecretResolver
from tests.conftest import unavailable
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_controller_reconcile import eventually
from tests.integration import secret_servers
from tests.integration.servers import Unavailable

pytestmark = pytest.mark.timeout(300)

RESOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: punchingfist-config}
spec:
  secrets: {llmApiKey: {secretRef: "%(slack)s"}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: %(name)s}
spec:
  steps: [{name: ask, type: agent, goal: "look"}]
  sinks: [slack-%(name)s, hook-%(name)s]
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: slack-%(name)s}
spec:
  type: slack
  config: {channel: "#ops", botTokenSecret: {secretRef: "%(slack)s"}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: hook-%(name)s}
spec:
  type: webhook
  config: {url: "https://hooks.example.com/x", authSecret: {secretRef: "%(hook)s"}}
"""


def _get(plane: ControlPlane, kind: str, name: str, namespace: str) -> Any:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _apply(plane: ControlPlane, slack: str, hook: str) -> str:
    name = f"refs-{uuid.uuid4().hex[:8]}"
    text = RESOURCES % {"name": name, "slack": slack, "hook": hook}
    documents = [d for c in compile_resources(load_resources(text)) for d in c.documents]
    plane.kubectl(
        "apply",
        "--server-side",
        "-n",
        plane.namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}),
    )
    return name


def test_the_operator_resolves_references_into_a_secret_owned_by_the_run(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane, namespace = control_plane, control_plane.namespace
    slack_token, hook_token = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv("PF_E2E_SLACK_TOKEN", slack_token)
    other = f"refs-src-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", other)
    plane.kubectl(
        "create", "secret", "generic", "hook", "-n", other, f"--from-literal=token={hook_token}"
    )
    slack_ref, hook_ref = "env://PF_E2E_SLACK_TOKEN", f"k8s://{other}/hook#token"
    name = _apply(plane, slack_ref, hook_ref)
    run = f"{name}-1"
    ArgoExecutor(str(plane.kubeconfig)).submit(
        RunSubmission(run, namespace, name, {"event": {"alert": {}}, "source": "e2e"})
    )
    workflow = _get(plane, "workflows.argoproj.io", run, namespace)
    secret = _get(plane, "secret", f"{run}-secrets", namespace)
    assert workflow is not None and secret is not None
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {reference_key(slack_ref): slack_token, reference_key(hook_ref): hook_token}
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Workflow",
        run,
        workflow["metadata"]["uid"],
    )

    def pod_secret_names() -> set[str] | None:
        """The Secrets the run's first pod (the agent step's) reads its env from: Argo's
        controller creates it (with no kubelet it never starts)."""
        listed = plane.get_json(
            "pods", "-n", namespace, "-l", f"workflows.argoproj.io/workflow={run}"
        )
        names = {
            variable["valueFrom"]["secretKeyRef"]["name"]
            for pod in listed["items"]
            for container in pod["spec"]["containers"]
            for variable in container.get("env") or []
            if "secretKeyRef" in (variable.get("valueFrom") or {})
        }
        return names or None

    # Argo filled in {{workflow.name}}: the step reads the run's own Secret
    assert eventually(pod_secret_names, "the agent step's pod") == {f"{run}-secrets"}
    plane.kubectl("delete", "namespace", other, "--wait=false")


def test_a_reference_that_cannot_be_read_fails_the_submission_naming_it(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane, namespace = control_plane, control_plane.namespace
    monkeypatch.delenv("PF_E2E_MISSING", raising=False)
    name = _apply(plane, "env://PF_E2E_MISSING", "k8s://nowhere/nothing#token")
    run = f"{name}-1"
    with pytest.raises(SubmitError) as caught:
        ArgoExecutor(str(plane.kubeconfig)).submit(
            RunSubmission(run, namespace, name, {"event": {"alert": {}}, "source": "e2e"})
        )
    assert not caught.value.temporary
    assert "env://PF_E2E_MISSING" in str(caught.value) or "k8s://nowhere" in str(caught.value)
    assert _get(plane, "workflows.argoproj.io", run, namespace) is None
    assert _get(plane, "secret", f"{run}-secrets", namespace) is None


@contextlib.contextmanager
def vault_dev() -> Iterator[secret_servers.VaultDev]:
    """The Vault dev server; skipped (failed in CI) when `make vault` has not built it."""
    try:
        with secret_servers.vault_dev() as server:
            yield server
    except Unavailable as error:
        unavailable(str(error), "e2e")


VAULT_POLICY = 'path "secret/data/punchingfist/*" { capabilities = ["read"] }'


def test_the_operator_logs_in_to_vault_with_its_service_account(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Vault's Kubernetes auth against our real API server: the operator's ServiceAccount token
    (a file, as Kubernetes mounts it) logs in with `secretManager.role` and reads KV v2 under
    `secretPath`; a role whose policy does not cover the path is refused, naming the
    reference."""
    plane, namespace = control_plane, control_plane.namespace
    account = f"vault-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "serviceaccount", account, "-n", namespace)
    plane.kubectl(  # Vault reviews the login token with the token itself (TokenReview)
        "create",
        "clusterrolebinding",
        f"{account}-reviewer",
        "--clusterrole=system:auth-delegator",
        f"--serviceaccount={namespace}:{account}",
    )
    jwt = tmp_path / "token"
    jwt.write_text(plane.kubectl("create", "token", account, "-n", namespace).stdout.strip())
    value = secrets.token_hex(16)
    reference = "vault://slack#bot-token"
    with vault_dev() as server:
        server.api("PUT", "sys/policies/acl/pf-read", {"policy": VAULT_POLICY})
        ca = Path(plane.pki.path("ca.crt")).read_text()
        roles = {"punchingfist-agent": ["pf-read"], "no-rights": ["default"]}
        server.kubernetes_auth(plane.server, ca, namespace, account, roles)
        server.put("punchingfist/slack", {"bot-token": value})

        def resolver(role: str) -> SecretResolver:
            spec = OperatorConfigSpec.model_validate(
                {
                    "secretManager": {
                        "type": "vault",
                        "endpoint": server.url,
                        "authMethod": "kubernetes",
                        "role": role,
                        "secretPath": "secret/data/punchingfist",
                    }
                }
            )
            environ = {"PUNCHINGFIST_VAULT_JWT_FILE": str(jwt)}
            return SecretResolver.for_config(spec, environ=environ)

        assert resolver("punchingfist-agent").resolve(reference, "operator") == value
        with pytest.raises(SecretError) as caught:
            resolver("no-rights").resolve(reference, "operator")
        assert reference in str(caught.value) and value not in str(caught.value)
