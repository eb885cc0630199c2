"""e2e (issue #26): the shipped OperatorConfigs `examples/operatorconfigs/vault.yaml`,
`aws-secrets.yaml` and `azure-keyvault.yaml` work as shipped against real servers.

For each, `punchingfist run -f <the shipped file> -f <a workflow> --event
examples/alerts/pod-crashlooping.json` runs as a user types it. The workflow has an agent step
(its model: the fake OpenAI server, which records the request headers) and a Slack sink with
no `botTokenSecret`, so the LLM key and the Slack token both come from the shipped file's
`spec.secrets` (`llmApiKey`, `slackToken`) and are read from its manager, with the login the
file names. The fake model and the fake Slack accept only the values stored in the manager.

Only what cannot be the same on loopback differs from production, all of it outside the
shipped files except Vault's address:
- Vault (`authMethod: kubernetes`, role punchingfist-agent, KV v2 `secret/data/punchingfist`):
  the file's `endpoint` is replaced by the dev server's URL, nothing else. The dev server's
  Kubernetes auth reviews tokens with the e2e tier's real kube-apiserver; the operator's
  ServiceAccount token is a file (PUNCHINGFIST_VAULT_JWT_FILE) instead of the pod's mount.
- AWS (`authMethod: iam-role`, IRSA; region us-west-2; prefix punchingfist/): the file is
  unchanged. The environment is what EKS's pod identity webhook sets (AWS_ROLE_ARN,
  AWS_WEB_IDENTITY_TOKEN_FILE holding a ServiceAccount token with audience sts.amazonaws.com,
  AWS_REGION of the cluster: us-east-1, not the file's region), no static keys, plus
  AWS_ENDPOINT_URL naming moto, which serves both STS AssumeRoleWithWebIdentity and Secrets
  Manager. The secrets exist only in us-west-2, so the file's region is the one used.
- Azure (`authMethod: managed-identity`, clientId 12345678-..., vaultUrl
  https://company-vault.vault.azure.net/): the file is unchanged. The vault's real name reaches
  the fake through an HTTPS CONNECT proxy (HTTPS_PROXY) whose tunnels all end at the fake, whose
  certificate names company-vault.vault.azure.net (REQUESTS_CA_BUNDLE trusts it); the managed
  identity's token comes from the fake's instance metadata endpoint
  (AZURE_POD_IDENTITY_AUTHORITY_HOST, as AAD Pod Identity sets it), which serves only that
  clientId. No AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET are set.

A run exits 0, the model got the stored key as its bearer token, Slack got one message with the
stored token, and neither value is in the run's output or files. With the Slack secret missing
from the manager the run stops before any step, naming the reference, without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, unavailable
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_secret_references import VAULT_POLICY, vault_dev
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.saas import FakeSlack
from tests.integration import secret_servers
from tests.integration.servers import Unavailable
from tests.integration.test_embedded_runs import environ, punchingfist

pytestmark = pytest.mark.timeout(180)

SHIPPED = EXAMPLES / "operatorconfigs"
EVENT = EXAMPLES / "alerts" / "pod-crashlooping.json"
CHANNEL = "C0123456"
WORKFLOW = f"""
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {{name: shipped-secrets}}
spec:
  runtime:
    llmConfig: {{provider: openai-compatible, model: shipped-check}}
  steps:
    - name: investigate
      type: agent
      goal: "Investigate: {{{{ .source.data.alert.summary }}}}"
      maxIterations: 2
  sinks: [slack-report]
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: slack-report}}
spec:
  type: slack
  config: {{channel: "{CHANNEL}"}}
"""
"""An agent step and a Slack sink without botTokenSecret: the OperatorConfig's slackToken."""
ANSWER = {
    "thought": "The pod restarts over and over.",
    "action": {
        "kind": "final_answer",
        "summary": "shipped-config check: my-app crash-loops",
        "problem_summary": "crash loop",
        "root_cause": "unknown",
        "can_auto_fix": False,
        "confidence": 0.5,
        "escalation_notes": "look at the logs",
    },
}
SLACK_REFERENCES = {
    "vault": "vault://slack#bot-token",
    "aws": "aws://slack#bot-token",
    "azure": "azure://company-vault/slack-bot-token",
}
"""The slackToken reference of each shipped file (checked against the file below)."""


@dataclass
class Shipped:
    """One shipped OperatorConfig made runnable: the file to give `-f`, the environment the
    manager's login needs, and how to store the LLM key and the Slack token in the manager."""

    file: Path
    env: dict[str, str]
    put_llm_key: Callable[[str], object]
    put_slack_token: Callable[[str], object]
    check_login: Callable[[], None]
    """Asserts, after a run, that the manager's login went the way the file says."""


def service_account(plane: ControlPlane, *audiences: str) -> tuple[str, str]:
    """A new ServiceAccount of the e2e namespace and a token of it (as a pod's projected
    token, for `audiences`). It may review tokens (TokenReview), as Vault's Kubernetes auth
    does with the login token itself."""
    account = f"pf-shipped-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "serviceaccount", account, "-n", plane.namespace)
    reviewer = f"--serviceaccount={plane.namespace}:{account}"
    delegator = "--clusterrole=system:auth-delegator"
    plane.kubectl("create", "clusterrolebinding", f"{account}-reviewer", delegator, reviewer)
    extra = [f"--audience={audience}" for audience in audiences]
    token = plane.kubectl("create", "token", account, "-n", plane.namespace, *extra).stdout
    return account, token.strip()


@contextlib.contextmanager
def vault(plane: ControlPlane, tmp_path: Path) -> Iterator[Shipped]:
    account, token = service_account(plane)
    jwt = tmp_path / "vault-token"
    jwt.write_text(token)
    with vault_dev() as server:
        shipped = (SHIPPED / "vault.yaml").read_text()
        assert shipped.count('endpoint: "https://vault.company.com"') == 1
        file = tmp_path / "vault.yaml"
        file.write_text(shipped.replace("https://vault.company.com", server.url))
        ca = Path(plane.pki.path("ca.crt")).read_text()
        server.api("PUT", "sys/policies/acl/pf-read", {"policy": VAULT_POLICY})
        roles = {"punchingfist-agent": ["pf-read"]}
        server.kubernetes_auth(plane.server, ca, plane.namespace, account, roles)

        def check_login() -> None:
            """The run logged in with the ServiceAccount: Vault holds tokens issued by the
            kubernetes auth method, each to role punchingfist-agent for that account."""
            accessors = server.api("LIST", "auth/token/accessors")["data"]["keys"]
            tokens = [
                server.api("POST", "auth/token/lookup-accessor", {"accessor": a})["data"]
                for a in accessors
            ]
            logins = [t["meta"] for t in tokens if t["path"] == "auth/kubernetes/login"]
            meta = {"role": "punchingfist-agent", "service_account_name": account}
            assert logins and [{k: m.get(k) for k in meta} for m in logins] == [meta] * len(logins)

        yield Shipped(
            file,
            {"PUNCHINGFIST_VAULT_JWT_FILE": str(jwt)},
            lambda key: server.put("punchingfist/llm", {"api-key": key}),
            lambda token: server.put("punchingfist/slack", {"bot-token": token}),
            check_login,
        )


AWS_ROLE = "arn:aws:iam::123456789012:role/punchingfist-agent"


@contextlib.contextmanager
def aws(plane: ControlPlane, tmp_path: Path) -> Iterator[Shipped]:
    token = tmp_path / "eks.amazonaws.com" / "token"
    token.parent.mkdir()
    token.write_text(service_account(plane, "sts.amazonaws.com")[1])
    with secret_servers.moto_server() as server:
        import boto3

        client = boto3.client(
            "secretsmanager",
            endpoint_url=server.url,
            region_name="us-west-2",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def put(name: str, key: str) -> Callable[[str], object]:
            return lambda value: client.create_secret(
                Name=name, SecretString=json.dumps({key: value})
            )

        env = {  # what EKS's pod identity webhook sets for IRSA, and moto's address
            "AWS_ROLE_ARN": AWS_ROLE,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "AWS_ENDPOINT_URL": server.url,
        }

        def check_login() -> None:
            """moto's STS issued credentials for AWS_ROLE_ARN (AssumeRoleWithWebIdentity: the
            run had no other credentials)."""
            with urllib.request.urlopen(f"{server.url}/moto-api/data.json", timeout=10) as answer:
                assumed = json.load(answer)["sts"]["AssumedRole"]
            assert [role["role_arn"] for role in assumed] == [AWS_ROLE]

        yield Shipped(
            SHIPPED / "aws-secrets.yaml",
            env,
            put("punchingfist/llm", "api-key"),
            put("punchingfist/slack", "bot-token"),
            check_login,
        )


AZURE_HOST = "company-vault.vault.azure.net"
AZURE_CLIENT_ID = "12345678-1234-1234-1234-123456789012"


@contextlib.contextmanager
def azure(
    plane: ControlPlane, tmp_path: Path, identity: str = AZURE_CLIENT_ID
) -> Iterator[Shipped]:
    """The shipped file; IMDS issues tokens to the managed identity `identity` only."""
    with (
        secret_servers.azure_keyvault_fake([AZURE_HOST], identity) as server,
        secret_servers.connect_proxy(int(server.url.rsplit(":", 1)[1])) as proxy,
    ):
        env = {
            "HTTPS_PROXY": proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": server.ca_file,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": server.imds_host,
        }

        def check_login() -> None:
            """The managed identity got its token from IMDS, and the vault's name went
            through the proxy."""
            assert f"GET {secret_servers.IMDS_TOKEN_PATH} client_id={AZURE_CLIENT_ID}" in (
                server.requests
            )
            assert set(proxy.tunnels) == {f"{AZURE_HOST}:443"}

        yield Shipped(
            SHIPPED / "azure-keyvault.yaml",
            env,
            lambda key: server.put("llm-api-key", key),
            lambda token: server.put("slack-bot-token", token),
            check_login,
        )


MANAGERS = {"vault": vault, "aws": aws, "azure": azure}


@pytest.fixture(params=sorted(MANAGERS))
def manager(
    request: pytest.FixtureRequest, control_plane: ControlPlane, tmp_path: Path
) -> Iterator[tuple[str, Shipped]]:
    try:
        with MANAGERS[request.param](control_plane, tmp_path) as shipped:
            yield request.param, shipped
    except Unavailable as error:
        unavailable(str(error), "e2e")


def run(
    shipped: Shipped, llm: FakeOpenAI, slack: FakeSlack, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`punchingfist run` of the shipped file and the workflow, in an environment of only the
    manager's login and the fakes' addresses (nothing from the developer's shell)."""
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(WORKFLOW)
    env = {
        **environ(tmp_path),
        "PF_SINK_BUDGET_SECONDS": "5",
        "SLACK_API_URL": f"{slack.url}/api/",
        **shipped.env,
    }
    argv = ["run", "-f", str(shipped.file), "-f", str(workflow), "--event", str(EVENT)]
    argv += ["--llm-endpoint", llm.url, "--output", "json", "--workdir", str(tmp_path / "runs")]
    return punchingfist(tmp_path, *argv, timeout=120, env=env)


def files_text(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


def test_a_shipped_config_gives_the_run_its_keys_from_its_manager(
    manager: tuple[str, Shipped], tmp_path: Path
) -> None:
    name, shipped = manager
    assert SLACK_REFERENCES[name] in shipped.file.read_text()
    key, token = f"sk-{secrets.token_hex(16)}", f"xoxb-{secrets.token_hex(12)}"
    shipped.put_llm_key(key)
    shipped.put_slack_token(token)
    with FakeOpenAI([], default=ANSWER) as llm, FakeSlack(token, {CHANNEL: "ops"}) as slack:
        done = run(shipped, llm, slack, tmp_path)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        (step,) = report["steps"]
        assert step["phase"] == "Succeeded", step
        assert "shipped-config check" in json.dumps(step["result"])
        sent = {{k.lower(): v for k, v in h.items()}.get("authorization") for h in llm.headers}
        assert llm.headers and sent == {f"Bearer {key}"}
        (sink,) = report["sinks"]
        assert sink["outcome"] == "delivered", sink
        assert len(slack.messages) == 1  # the fake accepts only `token`
    shipped.check_login()
    seen = done.stdout + done.stderr + files_text(tmp_path / "runs")
    assert key not in seen and token not in seen


def test_a_shipped_config_whose_slack_secret_is_missing_stops_the_run_naming_it(
    manager: tuple[str, Shipped], tmp_path: Path
) -> None:
    name, shipped = manager
    shipped.put_llm_key(f"sk-{secrets.token_hex(16)}")
    with FakeOpenAI([], default=ANSWER) as llm, FakeSlack("xoxb-never", {CHANNEL: "ops"}) as slack:
        stopped = run(shipped, llm, slack, tmp_path)
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr, stopped.stderr
    assert SLACK_REFERENCES[name] in stopped.stderr and "not found" in stopped.stderr
    assert llm.requests == [] and slack.messages == []


def test_the_azure_config_logs_in_only_as_its_managed_identity(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """`authMethod: managed-identity` asks IMDS for the file's clientId and nothing else: where
    this machine has another identity the run stops naming the reference and the identity,
    and no developer login (Azure CLI, PowerShell...) is tried."""
    other = "87654321-4321-4321-4321-210987654321"
    with (
        azure(control_plane, tmp_path, identity=other) as shipped,
        FakeOpenAI([], default=ANSWER) as llm,
        FakeSlack("xoxb-never", {CHANNEL: "ops"}) as slack,
    ):
        shipped.put_llm_key(f"sk-{secrets.token_hex(16)}")
        shipped.put_slack_token(f"xoxb-{secrets.token_hex(12)}")
        stopped = run(shipped, llm, slack, tmp_path)
        shipped.check_login()  # IMDS was asked for the shipped clientId
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr, stopped.stderr
    assert "secret azure://company-vault/" in stopped.stderr
    assert f"managed identity (clientId {AZURE_CLIENT_ID})" in stopped.stderr
    assert "AzureCliCredential" not in stopped.stderr and other not in stopped.stderr
    assert llm.requests == [] and slack.messages == []
