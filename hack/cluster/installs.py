"""What runs in the cluster once the node is Ready, installed as a user would install it:
the images pushed to the registry, CoreDNS, Argo (kustomize), the chart (helm) and the
examples (kubectl apply).
"""

from __future__ import annotations

import os
import secrets
import string
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hack.cluster import layout
from hack.cluster.kube import Kubectl, all_established, deployment_ready, pod_problems
from hack.cluster.processes import NotUp, run, wait_for

MANIFESTS = Path(__file__).parent / "manifests"
RELEASE = "punchingfist"
EXAMPLES = [
    "examples/workflows",
    "examples/sinks",
    "examples/sources",
    "examples/operatorconfigs/punchingfist-config.yaml",
]

Say = Callable[[str], None]


def registry_name(local: str) -> str:
    """`localhost/punchingfist/x:t` (buildah's storage) -> `localhost:5000/punchingfist/x:t`."""
    return f"{layout.REGISTRY}/{local.split('/', 1)[1]}"


def _in_registry(image: str) -> bool:
    repository, tag = image.split("/", 1)[1].rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{layout.REGISTRY}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.docker.distribution.manifest.v2+json"
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def push_images(images: dict[str, str], say: Say) -> dict[str, str]:
    """Push each built image (IMAGE_* in cluster-images.env) unless the registry has its tag
    (tags are hashes of the images' inputs). Returns the names the cluster pulls."""
    buildah = [
        "buildah",
        "--root",
        images["BUILDAH_ROOT"],
        "--runroot",
        images["BUILDAH_RUNROOT"],
        "--storage-driver",
        "overlay",
    ]
    pushed = {}
    for key, local in sorted(images.items()):
        if not key.startswith("IMAGE_"):
            continue
        remote = registry_name(local)
        if not _in_registry(remote):
            start = time.monotonic()
            run(
                [*buildah, "push", "--quiet", "--tls-verify=false", local, f"docker://{remote}"],
                what=f"pushing {local}",
                timeout=600,
            )
            say(f"pushed {remote} ({time.monotonic() - start:.1f} s)")
        pushed[key.removeprefix("IMAGE_")] = remote
    return pushed


def _template(path: Path, **values: str) -> str:
    return string.Template(path.read_text()).substitute(values)


def wait_deployments(kubectl: Kubectl, namespace: str, names: list[str], timeout: float) -> None:
    """Poll until the Deployments are available; on timeout the message says what their pods
    are waiting for (an image that cannot be pulled, a crash loop)."""

    def ready() -> bool:
        found = {
            item["metadata"]["name"]: deployment_ready(item)
            for item in kubectl.json("deployments", "-n", namespace).get("items", [])
        }
        return all(found.get(name) for name in names)

    try:
        wait_for(ready, f"waiting for {', '.join(names)} in {namespace}", timeout, interval=1)
    except NotUp as error:
        problems = pod_problems(kubectl.json("pods", "-n", namespace))
        raise NotUp(f"{error}\npods in {namespace}:\n  " + "\n  ".join(problems)) from None


def install_coredns(kubectl: Kubectl, image: str) -> None:
    kubectl.apply(
        _template(
            MANIFESTS / "coredns.yaml",
            IMAGE=image,
            CLUSTER_DOMAIN=layout.CLUSTER_DOMAIN,
            DNS_SERVICE_IP=layout.DNS_SERVICE_IP,
        )
    )


def install_argo(kubectl: Kubectl, argo_src: str, controller: str, executor: str) -> None:
    """Argo's own kustomize manifests with our images; CRDs applied server-side (they are
    too large for the last-applied annotation)."""
    with tempfile.TemporaryDirectory() as directory:
        # kustomize takes bases only by relative paths.
        os.symlink(os.path.join(argo_src, "manifests"), os.path.join(directory, "upstream"))
        for name in ("kustomization.yaml", "namespace.yaml"):
            text = _template(
                MANIFESTS / "argo" / name,
                ARGO_MANIFESTS="upstream",
                CONTROLLER_IMAGE=controller,
                EXECUTOR_IMAGE=executor,
            )
            Path(directory, name).write_text(text)
        manifests = kubectl("kustomize", "--load-restrictor", "LoadRestrictionsNone", directory)
    kubectl.apply(manifests, server_side=True)
    crds = [
        "workflows.argoproj.io",
        "workflowtemplates.argoproj.io",
        "workflowtaskresults.argoproj.io",
        "cronworkflows.argoproj.io",
    ]
    wait_for(
        lambda: all_established(kubectl.json("crd", *crds), crds),
        "waiting for Argo's CRDs to be Established",
        120,
    )


CHART_VALUES = {
    # No cert-manager here to issue the admission webhook's certificate.
    "admission.enabled": "false",
    # The tests stop a run whose image cannot be pulled; a user's cluster waits 180 s.
    "stepStartTimeout": "30",
    # Approved fixes may change workloads in these namespaces (they exist before the chart).
    "steps.remediator.namespaces": f"{{{layout.OPERATOR_NAMESPACE},{layout.WORKLOAD_NAMESPACE}}}",
}


OPERATOR_SECRETS = {
    # The example Source `webhook-bearer` (and Alertmanager's `authorization` credentials).
    "webhook-secret": "token",
    # The API key of the example Source `api-trigger` (X-API-Key).
    "api-trigger-secret": "token",
    # OperatorConfig `spec.chat.slack.signingSecret` of the example punchingfist-config.
    "slack-signing-secret": "signing-secret",
}
"""Secrets the operator reads as files (the chart's `secrets` value): made once with random
values, as a user makes them before installing; the tests read them back with kubectl."""


def create_operator_secrets(kubectl: Kubectl) -> None:
    """The namespaces the chart binds roles in, and the operator's Secrets (once)."""
    namespaces = (layout.OPERATOR_NAMESPACE, layout.WORKLOAD_NAMESPACE)
    kubectl.apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
    )
    found = kubectl.json("secrets", "-n", layout.OPERATOR_NAMESPACE)
    have = {item["metadata"]["name"] for item in found.get("items", [])}
    for name, key in OPERATOR_SECRETS.items():
        if name not in have:
            value = secrets.token_hex(24)
            kubectl(
                "create",
                "secret",
                "generic",
                name,
                "-n",
                layout.OPERATOR_NAMESPACE,
                f"--from-literal={key}={value}",
            )


def install_chart(
    kubectl: Kubectl, helm: str, kubeconfig: Path, runtime_image: str, *, timeout: float
) -> None:
    """`helm upgrade --install` of charts/punchingfist: the operator runs the runtime image.
    Helm installs a chart's CRDs once and never upgrades them: they are applied first, as
    the README tells users to on every upgrade."""
    chart = layout.ROOT / "charts" / "punchingfist"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", os.fspath(chart / "crds"))
    repository, tag = runtime_image.rsplit(":", 1)
    create_operator_secrets(kubectl)
    values = {**CHART_VALUES, "image.repository": repository, "image.tag": tag}
    values["secrets"] = "{" + ",".join(OPERATOR_SECRETS) + "}"
    command = [helm, "upgrade", "--install", RELEASE, os.fspath(chart)]
    command += ["--kubeconfig", os.fspath(kubeconfig), "--namespace", layout.OPERATOR_NAMESPACE]
    # No `--wait`: the caller waits for the Deployment, and says what its pod waits for.
    command += ["--create-namespace", "--timeout", f"{int(timeout)}s"]
    command += [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    run(command, what="helm upgrade --install punchingfist", timeout=timeout + 60)


def apply_examples(kubectl: Kubectl) -> None:
    files = [arg for path in EXAMPLES for arg in ("-f", os.fspath(layout.ROOT / path))]
    kubectl("apply", "-n", layout.OPERATOR_NAMESPACE, *files)
