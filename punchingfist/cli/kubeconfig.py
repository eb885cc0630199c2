"""The namespace a command works in when it is given none: the kubeconfig context's."""

from __future__ import annotations

from pathlib import Path


def context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context (in a pod: its own), else default."""
    from kubernetes import config

    mounted = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if not kubeconfig and mounted.is_file():
        return mounted.read_text().strip() or "default"
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")
