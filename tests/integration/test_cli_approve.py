"""`punchingfist approve` against the cluster (a fake API server on loopback, the kubernetes
library for real): the approver is the user of the credentials, the approvers an OperatorConfig
of the namespace lists are checked, and OperatorConfigs the account cannot read leave the
decision to RBAC. The e2e tier runs the same command against a real kube-apiserver and Argo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.cli import main
from tests.fakes.kubeapi import FakeKubeAPI, status
from tests.fakes.saas import Answer, Request

RUN = ("argoproj.io/v1alpha1", "workflows", "team", "run-1")
CONFIG = ("punchingfist.io/v1alpha1", "operatorconfigs", "team", "punchingfist-config")
GATE_NODE = "run-1-4242"


class ClusterAPI(FakeKubeAPI):
    """The fake API server; `refuse_configs` answers every OperatorConfig request with it."""

    refuse_configs: int | None = None

    def handle(self, request: Request) -> Answer:
        if self.refuse_configs and "/operatorconfigs" in request.path:
            return self.refuse_configs, status(self.refuse_configs, "scripted refusal")
        return super().handle(request)


@pytest.fixture
def api() -> Iterator[ClusterAPI]:
    fake = ClusterAPI(username="alice")
    fake.objects[RUN] = {
        "apiVersion": RUN[0],
        "kind": "Workflow",
        "metadata": {"name": "run-1", "namespace": "team"},
        "status": {
            "nodes": {
                GATE_NODE: {"displayName": "fix-approval", "type": "Suspend", "phase": "Running"}
            }
        },
    }
    with fake:
        yield fake


@pytest.fixture
def kubeconfig(api: ClusterAPI, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                "users": [{"name": "alice", "user": {"token": "alice-token"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "alice", "namespace": "team"},
                    }
                ],
                "current-context": "fake",
            }
        )
    )
    return path


def approvers(api: ClusterAPI, *names: str) -> None:
    api.objects[CONFIG] = {
        "apiVersion": CONFIG[0],
        "kind": "OperatorConfig",
        "metadata": {"name": CONFIG[3], "namespace": "team"},
        "spec": {"approvals": {"approvers": list(names)}},
    }


def gate(api: ClusterAPI) -> dict[str, Any]:
    node: dict[str, Any] = api.objects[RUN]["status"]["nodes"][GATE_NODE]
    return node


def approve(kubeconfig: Path, *args: str) -> int:
    return main(["approve", "run-1", "--kubeconfig", str(kubeconfig), *args])


def test_the_approver_is_the_user_of_the_credentials(
    api: ClusterAPI, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert approve(kubeconfig, "--comment", "go") == 0
    assert capsys.readouterr().out == "approved: run-1 / fix-approval (as alice)\n"
    node = gate(api)
    assert node["phase"] == "Succeeded"
    outputs = {p["name"]: p["value"] for p in node["outputs"]["parameters"]}
    assert outputs == {"approved": "true", "approver": "alice", "comment": "go"}


def test_an_operator_config_that_lists_approvers_decides_who_may_answer(
    api: ClusterAPI, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    approvers(api, "bob")
    assert approve(kubeconfig, "--deny") == 1
    assert "'alice' may not answer approval gates" in capsys.readouterr().err
    assert gate(api)["phase"] == "Running"
    approvers(api, "bob", "alice")
    assert approve(kubeconfig, "--deny") == 0
    assert capsys.readouterr().out == "denied: run-1 / fix-approval (as alice)\n"
    assert gate(api)["phase"] == "Succeeded"


@pytest.mark.parametrize("refusal", [403, 404])
def test_operator_configs_that_cannot_be_read_leave_it_to_rbac(
    api: ClusterAPI, kubeconfig: Path, refusal: int
) -> None:
    approvers(api, "bob")
    api.refuse_configs = refusal  # no right to read them (403), or no CRD (404)
    assert approve(kubeconfig) == 0
    assert gate(api)["phase"] == "Succeeded"


def test_a_failing_api_server_stops_the_answer_with_a_message(
    api: ClusterAPI, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api.refuse_configs = 500
    assert approve(kubeconfig) == 1
    assert capsys.readouterr().err == (
        "error: cannot list operatorconfigs in team: scripted refusal\n"
    )
    assert gate(api)["phase"] == "Running"
