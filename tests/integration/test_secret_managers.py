"""Secret references against the real managers (issue #26): a Slack token kept in Vault (dev
server, token auth), AWS Secrets Manager (moto) or Azure Key Vault (the REST fake) reaches the
sink step of a run of the embedded server (`serve --executor local`, assembled as `serve` does),
and the fake Slack accepts only that token. The token is rotated in the manager and the next
run uses the new one without a restart; a missing secret fails the run before any step starts,
naming the reference; no value is in the logs, the step outputs, the run's files, the API's
answers or the store (the audit rows name the reference and the run, never the value)."""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from punchingfist.api import load_resources
from punchingfist.cli.assembly import ApiAuth, LocalRuns, ServerOptions, assemble
from punchingfist.store import RunStep, SecretAccessRecord, WorkflowRun
from tests.conftest import EXAMPLES
from tests.fakes.saas import FakeSlack
from tests.integration import secret_servers
from tests.integration.conftest import _unavailable
from tests.integration.servers import Unavailable
from tests.integration.test_approvals_api import button, slack_request
from tests.unit.test_secret_references import WORKFLOW

SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec: {type: webhook, config: {path: /webhook/alerts}, triggerWorkflow: secret-check}
---
"""


@dataclass
class Manager:
    """One real secret manager: the OperatorConfig's secretManager, the reference to the
    Slack token, how to write a value, and the server process's environment to reach it."""

    config: dict[str, Any]
    reference: str
    put: Callable[[str], object]
    env: dict[str, str]


@contextlib.contextmanager
def vault() -> Iterator[Manager]:
    with secret_servers.vault_dev() as server:
        config = {"type": "vault", "endpoint": server.url, "secretPath": "secret/data/punchingfist"}
        yield Manager(
            config,
            "vault://slack#bot-token",
            lambda value: server.put("punchingfist/slack", {"bot-token": value}),
            {"VAULT_TOKEN": server.token},
        )


@contextlib.contextmanager
def aws() -> Iterator[Manager]:
    with secret_servers.moto_server() as server:
        config = {"type": "aws-secrets", "region": server.region, "secretPrefix": "punchingfist/"}
        created: list[str] = []

        def put(value: str) -> None:
            import boto3

            body = json.dumps({"bot-token": value})
            if not created:
                created.append(server.put("punchingfist/slack", body))
                return
            client = boto3.client("secretsmanager", endpoint_url=server.url, **_aws(server.env))
            client.put_secret_value(SecretId="punchingfist/slack", SecretString=body)

        yield Manager(config, "aws://slack#bot-token", put, server.env)


def _aws(env: dict[str, str]) -> dict[str, str]:
    return {
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


@contextlib.contextmanager
def azure() -> Iterator[Manager]:
    with secret_servers.azure_keyvault_fake() as server:
        vault_name = (urllib.parse.urlsplit(server.url).hostname or "").split(".")[0]
        yield Manager(
            {"type": "azure-keyvault", "vaultUrl": server.url},
            f"azure://{vault_name}/slack-bot-token",
            lambda value: server.put("slack-bot-token", value),
            server.env,
        )


MANAGERS = {"vault": vault, "aws": aws, "azure": azure}


@pytest.fixture(params=sorted(MANAGERS))
def manager(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    try:
        with MANAGERS[request.param]() as found:
            for name, value in found.env.items():  # the server's environment, not the steps'
                monkeypatch.setenv(name, value)
            yield found
    except Unavailable as error:
        _unavailable(str(error))


@dataclass
class Server:
    client: TestClient
    state: Any
    workdir: Path


@contextlib.contextmanager
def serve(
    tmp_path: Path, database_url: str, reference: str, manager: dict[str, Any] | None, slack: str
) -> Iterator[Server]:
    """The embedded server with the local engine, as `punchingfist serve --executor local`
    assembles it; OperatorConfig with `manager` and a 1 s secretRotation."""
    spec: dict[str, Any] = {
        "secretRotation": {"enabled": True, "checkInterval": "1s", "gracePeriod": "0s"}
    }
    if manager is not None:
        spec["secretManager"] = manager
    config = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "pf"},
        "spec": spec,
    }
    resources = load_resources(SOURCE + WORKFLOW % reference)
    resources += load_resources(json.dumps(config))
    workdir = tmp_path / "runs"
    steps_env = {  # what step processes get: no manager credentials
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(EXAMPLES.parent),
        "PF_SINK_BUDGET_SECONDS": "5",
        "SLACK_API_URL": f"{slack}/api/",
    }
    options = ServerOptions(
        resources,
        database_url,
        auth=ApiAuth(token=secrets.token_urlsafe(32)),
        executor=LocalRuns(workdir, steps_env),
        dispatch_interval=0.1,
    )
    assembly = assemble(options)
    state = assembly.state
    with TestClient(assembly.app, headers=state.access.headers()) as client:
        yield Server(client, state, workdir)
    state.engine.dispose()


def alert(n: int) -> dict[str, Any]:
    """The example alert as its own group: each one starts its own run."""
    body = copy.deepcopy(json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text()))
    body["groupKey"] = f'{{}}:{{alertname="SecretCheck{n}"}}'
    for item in body["alerts"]:
        item["labels"]["alertname"] = f"SecretCheck{n}"
        item["fingerprint"] = f"secretcheck{n:012d}"
    return body


def finished_run(server: Server, n: int) -> dict[str, Any]:
    (name,) = server.client.post("/webhook/alerts", json=alert(n)).json()["runs"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run: dict[str, Any] = server.client.get(f"/api/v1/runs/{name}").json()
        if run["status"] in ("succeeded", "failed", "error"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {name} did not finish")


def delivered(run: dict[str, Any]) -> bool:
    return [d["outcome"] for d in run["sink_deliveries"]] == ["delivered"]


def store_text(server: Server) -> str:
    """Every row of every table, as text."""
    with server.state.sessions() as session:
        tables = [
            row[0]
            for row in session.execute(
                text("SELECT name FROM sqlite_master WHERE type='table'")
                if server.state.engine.dialect.name == "sqlite"
                else text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        ]
        return "\n".join(
            str(row)
            for table in tables
            for row in session.execute(text(f'SELECT * FROM "{table}"'))
        )


def files_text(folder: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(folder.rglob("*")) if p.is_file()
    )


@pytest.mark.timeout(300)
def test_a_managed_slack_token_reaches_the_sink_and_a_rotated_one_the_next_run(
    manager: Manager,
    tmp_path: Path,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = (f"xoxb-{secrets.token_hex(12)}" for _ in range(2))
    manager.put(first)
    with (
        FakeSlack(first, {"C0123456": "ops"}) as slack,
        serve(tmp_path, database_url, manager.reference, manager.config, slack.url) as server,
    ):
        run = finished_run(server, 1)
        assert run["status"] == "succeeded" and delivered(run), run
        assert len(slack.messages) == 1  # the fake accepts only `first`

        manager.put(second)  # rotated in the manager; the old token stops working
        slack.token = second
        time.sleep(1.2)  # secretRotation.checkInterval: 1s
        again = finished_run(server, 2)
        assert again["status"] == "succeeded" and delivered(again), again
        assert len(slack.messages) == 2

        with server.state.sessions() as session:
            audit = session.scalars(select(SecretAccessRecord)).all()
            env_output = session.scalars(select(RunStep.result).where(RunStep.name == "look")).all()
        reads = {(a.who, a.reference, a.outcome) for a in audit}
        assert (f"run {run['name']}", manager.reference, "ok") in reads
        assert (f"run {again['name']}", manager.reference, "ok") in reads
        seen = "\n".join(
            [
                store_text(server),
                files_text(server.workdir),
                json.dumps(run),
                json.dumps(again),
                json.dumps(server.client.get("/api/v1/runs").json()),
                *capfd.readouterr(),
                caplog.text,
            ]
        )
        assert env_output, "the cli step's environment is recorded"
        for leaked in (first, second, *manager.env.values()):
            assert leaked not in seen
        assert "VAULT_TOKEN" not in str(env_output) and "AZURE_CLIENT_SECRET" not in str(env_output)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("reference", ["env://PF_TEST_NO_SUCH_TOKEN", "vault://slack#bot-token"])
def test_a_missing_secret_fails_the_run_before_any_step_naming_the_reference(
    reference: str, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PF_TEST_NO_SUCH_TOKEN", raising=False)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    with (
        FakeSlack("xoxb-never", {"C0123456": "ops"}) as slack,
        serve(tmp_path, database_url, reference, None, slack.url) as server,
    ):
        run = finished_run(server, 3)
        assert run["status"] == "error", run  # as a run that could not start
        assert reference in json.dumps(run)
        assert run["steps"] == [] and run["sink_deliveries"] == [] and slack.messages == []
        with server.state.sessions() as session:
            assert session.scalars(select(RunStep)).all() == []
            (record,) = session.scalars(select(WorkflowRun)).all()
            failure = session.scalars(select(SecretAccessRecord)).one()
        assert record.status == "error" and reference in (record.error or "")
        assert failure.reference == reference and failure.who == f"run {run['name']}"
        assert reference in failure.outcome and failure.outcome != "ok"


ROTATING_SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec:
  type: webhook
  triggerWorkflow: secret-check
  config:
    path: /webhook/alerts
    authentication: {type: bearer, secretRef: "REFERENCE"}
---
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: pf}
spec:
  secretManager: MANAGER
  secretRotation: {enabled: true, checkInterval: "1s", gracePeriod: "0s"}
  approvals: {approvers: [alice], tokensSecret: approver-tokens}
  chat: {slack: {signingSecret: {secretRef: slack-signing, key: secret}}}
"""


@pytest.mark.timeout(120)
def test_the_webhook_and_approver_tokens_are_re_read_when_rotated(
    manager: Manager, tmp_path: Path, database_url: str
) -> None:
    """The server checks a webhook Source's bearer token kept in the manager, and the approver
    tokens and the Slack signing secret of mounted Secrets (files): rotated, the new ones are
    accepted and the old ones refused, without a restart."""
    old_hook, new_hook, old_alice, new_alice = (secrets.token_urlsafe(24) for _ in range(4))
    old_signing, new_signing = (secrets.token_hex(16) for _ in range(2))
    manager.put(old_hook)
    tokens = tmp_path / "secrets" / "approver-tokens"
    tokens.mkdir(parents=True)
    (tokens / "alice").write_text(old_alice)
    signing = tmp_path / "secrets" / "slack-signing"
    signing.mkdir()
    (signing / "secret").write_text(old_signing)
    text = ROTATING_SOURCE.replace("REFERENCE", manager.reference)
    text = text.replace("MANAGER", json.dumps(manager.config))
    options = ServerOptions(
        load_resources(WORKFLOW % "env://UNUSED" + "---\n" + text),
        database_url,
        auth=ApiAuth(token=secrets.token_urlsafe(32)),
        secrets_dir=tmp_path / "secrets",
    )
    assembly = assemble(options)

    def hook(token: str, n: int) -> int:
        answer = client.post(
            "/webhook/alerts", json=alert(n), headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code

    def approvals(token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        return client.get("/api/v1/approvals", headers=headers).status_code

    def slack(secret: str) -> int:
        body, headers = slack_request(button("U0ALICE", "approve"), secret=secret)
        return client.post("/slack/interactions", content=body, headers=headers).status_code

    with TestClient(assembly.app) as client:
        assert hook(old_hook, 1) == 200 and hook("wrong", 2) == 401
        assert approvals(old_alice) == 200 and approvals(new_alice) == 401
        assert slack(old_signing) != 401 and slack(new_signing) == 401

        manager.put(new_hook)
        (tokens / "alice").write_text(new_alice)
        (signing / "secret").write_text(new_signing)
        time.sleep(1.2)  # secretRotation.checkInterval
        assert hook(new_hook, 3) == 200 and hook(old_hook, 4) == 401
        assert approvals(new_alice) == 200 and approvals(old_alice) == 401
        assert slack(new_signing) != 401 and slack(old_signing) == 401
    assembly.state.engine.dispose()


@pytest.mark.timeout(300)
def test_punchingfist_run_reads_the_reference_from_the_configs_manager(
    manager: Manager, tmp_path: Path
) -> None:
    """`punchingfist run -f ...` with the OperatorConfig's secretManager: the token reaches the
    sink; a reference to a secret that is not there stops the run before any step."""
    token = f"xoxb-{secrets.token_hex(12)}"
    manager.put(token)
    config = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "pf"},
        "spec": {"secretManager": manager.config},
    }
    missing = manager.reference.replace("slack", "nothing-here")
    for name, reference in (("found", manager.reference), ("missing", missing)):
        (tmp_path / f"{name}.yaml").write_text(WORKFLOW % reference + "---\n" + json.dumps(config))
    with FakeSlack(token, {"C0123456": "ops"}) as slack:
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(EXAMPLES.parent),
            "PF_SINK_BUDGET_SECONDS": "5",
            "SLACK_API_URL": f"{slack.url}/api/",
            **manager.env,
        }

        def run(name: str) -> subprocess.CompletedProcess[str]:
            event = str(EXAMPLES / "alerts" / "pod-crashlooping.json")
            workdir = ["--output", "json", "--workdir", str(tmp_path / name)]
            argv = ["run", "-f", str(tmp_path / f"{name}.yaml"), "--event", event, *workdir]
            return subprocess.run(
                [sys.executable, "-m", "punchingfist.cli", *argv],
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )

        found = run("found")
        assert found.returncode == 0, found.stderr
        (sink,) = json.loads(found.stdout)["sinks"]
        assert sink["outcome"] == "delivered" and len(slack.messages) == 1
        assert token not in found.stdout + found.stderr

        stopped = run("missing")
        assert stopped.returncode != 0 and "Traceback" not in stopped.stderr
        assert missing in stopped.stderr and "not found" in stopped.stderr
        assert not (tmp_path / "missing").exists() and len(slack.messages) == 1
