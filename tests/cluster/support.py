"""The running single-node cluster (`make cluster-up`), as the cluster tier uses it: kubectl and
argo with its admin kubeconfig, the operator's API through its Service, and waits that say
what they saw when they give up."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml

from hack.cluster import layout
from hack.cluster.kube import all_conditions, pod_problems
from hack.cluster.layout import CACHE, Layout, read_env
from hack.cluster.lifecycle import Cluster

T = TypeVar("T")
NAMESPACE = layout.OPERATOR_NAMESPACE
FINISHED = ("Succeeded", "Failed", "Error")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass
class LiveCluster:
    """A cluster `up` finished starting, with what the tests need to reach it."""

    layout: Layout
    binaries: dict[str, str]
    images: dict[str, str]
    created: list[tuple[str, str]] = field(default_factory=list)
    """(kind, name) of objects the tests made in NAMESPACE, deleted at the end."""
    created_elsewhere: list[tuple[str, str, str]] = field(default_factory=list)
    """(kind, name, namespace) of objects made in other namespaces, deleted at the end."""
    _tokens: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls) -> LiveCluster | str:
        """The running cluster, or why there is none."""
        cluster = Cluster()
        problems = cluster.running()
        if problems:
            return f"the cluster is not running ({'; '.join(problems)}): run `make cluster-up`"
        state = cluster.state()
        if state is None or not state.images:
            return "the cluster started but nothing is installed: run `make cluster-up`"
        return cls(cluster.layout, read_env(CACHE / "cluster.env"), state.images)

    # -- commands ---------------------------------------------------------------------------

    def _run(self, argv: list[str], stdin: str | None, check: bool, timeout: float) -> str:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv[:6])} ... failed:\n{done.stderr}{done.stdout}")
        return done.stdout + (done.stderr if not check else "")

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> str:
        argv = [self.binaries["KUBECTL"], "--kubeconfig", str(self.layout.kubeconfig), *args]
        return self._run(argv, stdin, check, timeout)

    def argo(self, *args: str, timeout: float = 120) -> str:
        argv = [
            self.binaries["ARGO"],
            "--kubeconfig",
            str(self.layout.kubeconfig),
            "-n",
            NAMESPACE,
            *args,
        ]
        return self._run(argv, None, True, timeout)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args))

    def apply(self, document: dict[str, Any]) -> None:
        document.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))
        kind = document["kind"].lower()
        plural = "workflows.punchingfist.io" if kind == "workflow" else kind
        self.created.append((plural, document["metadata"]["name"]))

    def cleanup(self) -> None:
        made = [(kind, name, NAMESPACE) for kind, name in self.created] + self.created_elsewhere
        for kind, name, namespace in reversed(made):
            self.kubectl(
                "delete",
                kind,
                name,
                "-n",
                namespace,
                "--ignore-not-found",
                "--wait=false",
                check=False,
            )
        self.created.clear()
        self.created_elsewhere.clear()

    # -- the operator -------------------------------------------------------------------------

    def operator_url(self) -> str:
        service = self.get("service", "punchingfist", "-n", NAMESPACE)
        return f"http://{service['spec']['clusterIP']}:8080"

    def token(self, role: str = "viewer") -> str:
        """A bearer token of ServiceAccount `pf-test-<role>`, bound to the chart's
        `punchingfist-<role>` ClusterRole in the operator's namespace (made on first use)."""
        account = f"pf-test-{role}"
        if account not in self._tokens:
            self.kubectl("create", "serviceaccount", account, "-n", NAMESPACE, check=False)
            self.kubectl(
                "create",
                "rolebinding",
                account,
                "-n",
                NAMESPACE,
                f"--clusterrole=punchingfist-{role}",
                f"--serviceaccount={NAMESPACE}:{account}",
                check=False,
            )
            made = self.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=2h")
            self._tokens[account] = made.strip()
        return self._tokens[account]

    def operator_get(self, path: str, token: str | None = "viewer") -> Any:
        """GET from the operator's API, through its Service's ClusterIP (kube-proxy), with the
        token of a ServiceAccount bound to `punchingfist-<token>` (None: no credentials)."""
        headers = {"Authorization": f"Bearer {self.token(token)}"} if token else {}
        request = urllib.request.Request(f"{self.operator_url()}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return {"status": error.code, "body": error.read().decode(errors="replace")}

    def notify(self, path: str, payload: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        """POST an Alertmanager notification to the operator's webhook Source at `path`, as
        Alertmanager does (through the Service), once the operator serves that Source."""

        def posted() -> dict[str, Any] | None:
            request = urllib.request.Request(
                f"{self.operator_url()}{path}",
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer: dict[str, Any] = json.load(response)
            except urllib.error.HTTPError as error:
                if error.code == 404:  # the Source is not served yet
                    return None
                raise
            return answer

        return self.wait(posted, f"the operator to serve {path}", timeout)

    def run_record(
        self, name: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """The operator's record of run `name`, once `done` says it is complete."""
        last: list[Any] = []

        def found() -> dict[str, Any] | None:
            record = self.operator_get(f"/api/v1/runs/{name}")
            last[:] = [record]
            return record if "steps" in record and done(record) else None

        return self.wait(
            found,
            f"the operator's record of run {name}",
            timeout,
            lambda: json.dumps(last, indent=1)[-3000:],
        )

    # -- Argo -----------------------------------------------------------------------------

    def submit(self, template: str, *parameters: str) -> str:
        """`argo submit --from workflowtemplate/NAME`, as a user starts an ad-hoc run."""
        flags = [arg for parameter in parameters for arg in ("-p", parameter)]
        name = self.argo(
            "submit", "--from", f"workflowtemplate/{template}", *flags, "-o", "name"
        ).strip()
        self.created.append(("workflows.argoproj.io", name))
        return name

    def argo_workflow(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get("workflows.argoproj.io", name, "-n", NAMESPACE)
        return result

    def finished(self, name: str, timeout: float = 240) -> dict[str, Any]:
        """The Argo Workflow once it has finished (any phase); one the server has named but
        not created yet (its dispatcher starts it a moment after the webhook answered, or
        after its Source's window) is waited for too."""

        def done() -> dict[str, Any] | None:
            found = self.kubectl(
                "get", "-o", "json", "workflows.argoproj.io", name, "-n", NAMESPACE, check=False
            )
            if not found.lstrip().startswith("{"):
                return None  # not created yet
            workflow: dict[str, Any] = json.loads(found)
            return workflow if workflow.get("status", {}).get("phase") in FINISHED else None

        return self.wait(
            done, f"Argo Workflow {name} to finish", timeout, lambda: self.describe_run(name)
        )

    def describe_run(self, name: str) -> str:
        workflow = self.argo_workflow(name)
        nodes = {
            n.get("displayName"): (n.get("phase"), n.get("message"))
            for n in (workflow.get("status") or {}).get("nodes", {}).values()
        }
        pods = pod_problems(
            self.get("pods", "-n", NAMESPACE, "-l", f"workflows.argoproj.io/workflow={name}")
        )
        return f"phase {workflow.get('status', {}).get('phase')}; nodes {nodes}; pods {pods}"

    def step_node(self, workflow: dict[str, Any], step: str) -> dict[str, Any]:
        (node,) = [
            n
            for n in workflow["status"]["nodes"].values()
            if n.get("displayName") == step and n.get("type") == "Pod"
        ]
        return dict(node)

    # -- waiting ---------------------------------------------------------------------------

    def wait_condition(self, condition: str, *objects: str, timeout: float = 180) -> None:
        """Poll until every object `kubectl get OBJECTS` finds has `condition` True (not
        `kubectl wait`: it errors out while an object has no conditions yet)."""

        def met() -> bool:
            found = self.kubectl("get", "-o", "json", *objects, check=False)
            return found.lstrip().startswith("{") and all_conditions(json.loads(found), condition)

        self.wait(
            met,
            f"{condition} of {' '.join(objects)}",
            timeout,
            lambda: self.kubectl("get", *objects, check=False),
        )

    @staticmethod
    def wait(
        check: Callable[[], T | None],
        what: str,
        timeout: float,
        saw: Callable[[], str] = lambda: "",
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}; saw: {saw()}")
            time.sleep(1)

    def logs(self) -> dict[str, str]:
        """What to read when a test fails: the operator's and Argo's logs, the node's."""
        tails = {
            "operator": self.kubectl(
                "logs", "-n", NAMESPACE, "deploy/punchingfist", "--tail", "60", check=False
            ),
            "workflow-controller": self.kubectl(
                "logs",
                "-n",
                layout.ARGO_NAMESPACE,
                "deploy/workflow-controller",
                "--tail",
                "40",
                check=False,
            ),
        }
        for name in ("kubelet", "containerd"):
            path = self.layout.logs / f"{name}.log"
            if path.exists():
                tails[name] = "\n".join(path.read_text(errors="replace").splitlines()[-30:])
        return tails


def workflow(name: str, steps: list[dict[str, Any]], **runtime: Any) -> dict[str, Any]:
    """A punchingfist Workflow resource."""
    spec: dict[str, Any] = {"steps": steps}
    if runtime:
        spec["runtime"] = runtime
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def ready_template(cluster: LiveCluster, name: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until the operator has compiled Workflow `name`: its WorkflowTemplate."""
    cluster.wait_condition(
        "Ready", f"workflows.punchingfist.io/{name}", "-n", NAMESPACE, timeout=timeout
    )
    template: dict[str, Any] = cluster.get("workflowtemplates.argoproj.io", name, "-n", NAMESPACE)
    return template


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def host_service(cluster: LiveCluster, name: str, port: int, target: int) -> None:
    """Service `name:port` in the operator's namespace whose endpoint is `NODE_IP:target` (a
    server the test runs on the pod bridge): what the example resources'
    `http://llm-service:8080` and `http://alertmanager:9093` reach from step pods."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": port, "targetPort": target}]},
        }
    )
    cluster.apply(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [layout.NODE_IP]}],
            "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
        }
    )


def slack_click(operator: str, secret: str, value: str, user: str, name: str) -> dict[str, Any]:
    """A Slack block action on a button, signed with the app's signing secret."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": name},
        "actions": [{"action_id": "pf", "type": "button", "value": value}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    request = urllib.request.Request(
        f"{operator}/slack/interactions",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest.hexdigest()}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.load(response)
    return answer
