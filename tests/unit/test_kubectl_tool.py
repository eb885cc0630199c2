"""The kubectl tool (D12, issue #18 §1): the model gives a typed call, we build the argv.

Every bypass of the old argv blacklist is shown impossible here, either as a validation error
the model reads or as a refusal; a property test checks the argv of any valid call."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from punchingfist.api.workflows import KUBECTL_READS, KUBECTL_WRITES, Safety
from punchingfist.runtime.tools import kubectl
from punchingfist.runtime.tools.kubectl import KubectlPolicy, argv
from punchingfist.runtime.tools.kubectl_calls import ACTIONS, KubectlCall

READ_ONLY = KubectlPolicy()
APPROVED = KubectlPolicy(approved=True)
PRODUCTION = KubectlPolicy(allowed_namespaces=frozenset({"production"}))


def call(**fields: Any) -> KubectlCall:
    return KubectlCall.model_validate({"tool": "kubectl", "namespace": "production", **fields})


def rejected(**fields: Any) -> str:
    """The validation message the model would read for this call."""
    with pytest.raises(ValidationError) as caught:
        KubectlCall.model_validate({"tool": "kubectl", **fields})
    return str(caught.value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"verb": "get", "resource": "pods"}, ["get", "--namespace=production", "--", "pods"]),
        (
            {"verb": "get", "resource": "pod", "name": "my-app-pod-xyz", "output": "wide"},
            ["get", "--namespace=production", "--output=wide", "--", "pod", "my-app-pod-xyz"],
        ),
        (
            {
                "verb": "get",
                "resource": "deployments.apps",
                "label_selector": "app=web,tier!=db",
                "field_selector": "status.phase!=Running",
            },
            [
                "get",
                "--namespace=production",
                "--selector=app=web,tier!=db",
                "--field-selector=status.phase!=Running",
                "--",
                "deployments.apps",
            ],
        ),
        (
            {"verb": "describe", "resource": "svc", "name": "user-auth-service"},
            ["describe", "--namespace=production", "--", "svc", "user-auth-service"],
        ),
        (
            {"verb": "logs", "name": "my-app-pod-xyz", "previous": True, "container": "app"},
            [
                "logs",
                "--namespace=production",
                "--container=app",
                "--previous",
                "--tail=200",
                "--",
                "my-app-pod-xyz",
            ],
        ),
        (
            {"verb": "logs", "label_selector": "app=payment-service", "since": "15m", "tail": 50},
            [
                "logs",
                "--namespace=production",
                "--selector=app=payment-service",
                "--since=15m",
                "--tail=50",
            ],
        ),
        (
            {"verb": "logs", "resource": "deployment", "name": "my-app"},
            ["logs", "--namespace=production", "--tail=200", "--", "deployment/my-app"],
        ),
        (
            {"verb": "events", "name": "my-app-pod-xyz"},
            [
                "get",
                "events",
                "--namespace=production",
                "--field-selector=involvedObject.name=my-app-pod-xyz",
                "--sort-by=.lastTimestamp",
            ],
        ),
        (
            {"verb": "top", "resource": "pods", "label_selector": "app=web"},
            ["top", "pod", "--namespace=production", "--selector=app=web"],
        ),
        (
            {"verb": "rollout-history", "resource": "deployment", "name": "my-app", "revision": 7},
            [
                "rollout",
                "history",
                "--namespace=production",
                "--revision=7",
                "--",
                "deployment",
                "my-app",
            ],
        ),
        (
            {"verb": "rollout-status", "resource": "sts", "name": "db"},
            ["rollout", "status", "--namespace=production", "--watch=false", "--", "sts", "db"],
        ),
        (
            {"verb": "rollout-restart", "resource": "deployment", "name": "my-app"},
            ["rollout", "restart", "--namespace=production", "--", "deployment", "my-app"],
        ),
        (
            {"verb": "scale", "resource": "statefulset", "name": "postgres", "replicas": 2},
            ["scale", "--namespace=production", "--replicas=2", "--", "statefulset", "postgres"],
        ),
        (
            {"verb": "delete", "resource": "pod", "name": "my-app-pod-xyz"},
            ["delete", "--namespace=production", "--wait=false", "--", "pod", "my-app-pod-xyz"],
        ),
        (
            {
                "verb": "set-resources",
                "resource": "deployment",
                "name": "my-app",
                "limits": {"memory": "1Gi"},
                "requests": {"cpu": "250m", "memory": "512Mi"},
            },
            [
                "set",
                "resources",
                "--namespace=production",
                "--limits=memory=1Gi",
                "--requests=cpu=250m,memory=512Mi",
                "--",
                "deployment",
                "my-app",
            ],
        ),
    ],
)
def test_each_verb_builds_its_argv(fields: dict[str, Any], expected: list[str]) -> None:
    assert argv(call(**fields)) == expected


# Issue #18 §1, each bypass of the old argv check: now not expressible at all.
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # `get --filename=http://HOST/secret.yaml -o yaml`, `-fhttp://…`: no field names a file
        (
            {"verb": "get", "namespace": "production", "filename": "http://h/secret.yaml"},
            "Extra inputs are not permitted",
        ),
        (
            {"verb": "get", "namespace": "production", "resource": "-fhttp://h/secret.yaml"},
            "should match pattern",
        ),
        (
            {"verb": "get", "namespace": "production", "resource": "pods", "name": "-fhttp://h/s"},
            "should match pattern",
        ),
        (
            {
                "verb": "get",
                "namespace": "production",
                "resource": "pods",
                "output": "yaml",
                "label_selector": "-fhttp://h/s",
            },
            "should match pattern",
        ),
        # `-nkube-system`, `-n production -n kube-system`: one namespace field, checked
        ({"verb": "get", "namespace": "-nkube-system", "resource": "pods"}, "should match pattern"),
        (
            {"verb": "get", "namespace": ["production", "kube-system"], "resource": "pods"},
            "should be a valid string",
        ),
        (
            {"verb": "get", "namespace": "production -n kube-system", "resource": "pods"},
            "should match pattern",
        ),
        # `--all-namespaces=true`, `-A=true`, and no namespace at all
        (
            {"verb": "get", "namespace": "production", "resource": "pods", "all_namespaces": True},
            "Extra inputs are not permitted",
        ),
        ({"verb": "get", "namespace": "production", "resource": "-A=true"}, "should match pattern"),
        ({"verb": "get", "resource": "pods"}, "namespace\n  Field required"),
        # `-shttp://127.0.0.1:PORT`, `--server`, `--kubeconfig`, `--token`, `--as`
        (
            {"verb": "get", "namespace": "production", "resource": "pods", "server": "http://x"},
            "Extra inputs are not permitted",
        ),
        (
            {"verb": "get", "namespace": "production", "resource": "-shttp://127.0.0.1:1"},
            "should match pattern",
        ),
        (
            {"verb": "get", "namespace": "production", "resource": "pods", "args": ["--as=admin"]},
            "Extra inputs are not permitted",
        ),
        # `version --client --profile=cpu --profile-output=/any/path`, `--cache-dir=…`,
        # `cluster-info dump --output-directory=…`: no such verbs, no such fields
        ({"verb": "version", "namespace": "production"}, "Input should be 'get'"),
        ({"verb": "cluster-info", "namespace": "production"}, "Input should be 'get'"),
        (
            {
                "verb": "get",
                "namespace": "production",
                "resource": "pods",
                "output": "jsonpath={.x}",
            },
            "Input should be 'wide', 'yaml', 'json' or 'name'",
        ),
        (
            {"verb": "logs", "namespace": "production", "name": "p", "since": "--profile=cpu"},
            "should match pattern",
        ),
        # Secrets in every spelling, and `all`
        ({"verb": "get", "namespace": "production", "resource": "secrets"}, "Secrets are never"),
        ({"verb": "get", "namespace": "production", "resource": "secret"}, "Secrets are never"),
        ({"verb": "get", "namespace": "production", "resource": "secrets.v1"}, "Secrets are never"),
        ({"verb": "describe", "namespace": "production", "resource": "all"}, "Secrets are never"),
        (
            {"verb": "get", "namespace": "production", "resource": "secret/x"},
            "should match pattern",
        ),
        (
            {"verb": "get", "namespace": "production", "resource": "pods,secrets"},
            "should match pattern",
        ),
        ({"verb": "get", "namespace": "production", "resource": "SECRETS"}, "should match pattern"),
        # fields a verb does not use, and what a verb needs
        (
            {"verb": "get", "namespace": "production", "resource": "pods", "tail": 5},
            "`tail` is not used by verb get; it is for logs",
        ),
        (
            {"verb": "delete", "namespace": "production", "resource": "namespace", "name": "x"},
            "verb delete takes resource pod or pods or po",
        ),
        (
            {"verb": "scale", "namespace": "production", "resource": "deployment", "name": "x"},
            "verb scale needs `replicas`",
        ),
        ({"verb": "logs", "namespace": "production"}, "either `name` (a pod) or"),
        (
            {
                "verb": "set-resources",
                "namespace": "production",
                "resource": "deployment",
                "name": "x",
            },
            "needs `limits`, `requests` or both",
        ),
        (
            {
                "verb": "set-resources",
                "namespace": "production",
                "resource": "deployment",
                "name": "x",
                "limits": {"memory": "1Gi; rm"},
            },
            "should match pattern",
        ),
    ],
)
def test_the_bypasses_cannot_be_expressed(fields: dict[str, Any], message: str) -> None:
    assert message in rejected(**fields)


def test_the_namespace_must_be_an_allowed_one() -> None:
    assert kubectl.check(call(verb="get", resource="pods"), PRODUCTION) is None
    other = call(verb="get", resource="pods", namespace="kube-system")
    assert "'kube-system' is outside this step's allowed namespaces (production)" in (
        kubectl.check(other, PRODUCTION) or ""
    )


def test_writes_only_behind_an_approved_gate() -> None:
    restart = call(verb="rollout-restart", resource="deployment", name="my-app")
    reason = kubectl.check(restart, READ_ONLY) or ""
    assert "changes the cluster" in reason and "approved approval gate" in reason
    assert kubectl.check(restart, APPROVED) is None
    for verb in KUBECTL_WRITES:
        assert ACTIONS[verb].writes
    assert not any(ACTIONS[verb].writes for verb in KUBECTL_READS)


def test_require_approval_names_actions_or_kubectl_words() -> None:
    logs = call(verb="logs", name="pod-x")
    history = call(verb="rollout-history", resource="deployment", name="x")
    gated_logs = KubectlPolicy(require_approval=frozenset({"logs"}))
    assert "is set to need approval" in (kubectl.check(logs, gated_logs) or "")
    assert kubectl.check(call(verb="get", resource="pods"), gated_logs) is None
    gated_rollout = KubectlPolicy(require_approval=frozenset({"rollout"}))
    assert "approval" in (kubectl.check(history, gated_rollout) or "")
    assert (
        kubectl.check(
            history, KubectlPolicy(require_approval=frozenset({"rollout"}), approved=True)
        )
        is None
    )
    assert Safety(require_approval=["delete", "patch", "scale", "logs"]).require_approval
    with pytest.raises(ValidationError, match="'exec' is not an action of the kubectl tool"):
        Safety(require_approval=["exec"])


def test_a_refused_call_runs_nothing_and_shows_its_argv(tmp_path: Path) -> None:
    policy = KubectlPolicy(binary="/nonexistent/kubectl")
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: lab\n")
    env = {"KUBECONFIG": str(config)}
    delete = call(verb="delete", resource="pod", name="x")
    result = kubectl.run(delete, policy, env)
    assert result.status == "refused"  # had it tried to run, it would say "cannot run"
    assert result.details["argv"][:2] == ["kubectl", "delete"]
    ran = kubectl.run(call(verb="get", resource="pods"), policy, env)
    assert ran.error == "cannot run /nonexistent/kubectl: No such file or directory"
    assert ran.details["argv"] == ["kubectl", "get", "--namespace=production", "--", "pods"]


def test_without_a_cluster_kubectl_says_so(tmp_path: Path) -> None:
    policy = KubectlPolicy(binary="/nonexistent/kubectl")
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")  # no current context
    for env in ({"HOME": str(tmp_path)}, {"KUBECONFIG": f"{tmp_path}/missing:{empty}"}):
        result = kubectl.run(call(verb="get", resource="pods"), policy, env)
        assert result.status == "error" and (result.error or "").startswith("no cluster:"), env
    delete = call(verb="delete", resource="pod", name="x")
    assert kubectl.run(delete, policy, {}).status == "refused"  # the policy checks first


# The property: whatever values the model gives, a call that validates builds an argv with
# exactly one namespace flag, none of the forbidden flags, and no model value as a flag.
FORBIDDEN = (
    "-f",
    "--filename",
    "-s",
    "--server",
    "--kubeconfig",
    "--token",
    "--as",
    "--as-group",
    "--as-uid",
    "--cache-dir",
    "--profile",
    "--profile-output",
    "--output-directory",
    "--raw",
    "-A",
    "--all-namespaces",
    "-n",
    "--context",
    "--cluster",
    "--user",
    "--username",
    "--password",
    "--certificate-authority",
    "--client-certificate",
    "--client-key",
    "--insecure-skip-tls-verify",
    "-k",
    "--kustomize",
    "-o=jsonpath",
    "--template",
    "-p",
    "--patch",
    "--",
    "-",
)
PLAUSIBLE = {
    "namespace": ["production", "shop", "kube-system"],
    "resource": ["pods", "pod", "po", "deployment", "deploy", "sts", "nodes", "svc", "rs"],
    "name": ["my-app", "my-app-pod-xyz", "db-0"],
    "label_selector": ["app=web", "app in (a,b),!canary"],
    "field_selector": ["status.phase=Running", "type=Warning,reason!=Pulled"],
    "container": ["app"],
    "since": ["15m", "2h"],
    "output": ["wide", "yaml", "json", "name"],
    "amount": ["1Gi", "250m", "2"],
}
NASTY = st.sampled_from(
    [
        "-f",
        "--filename=http://x/s.yaml",
        "-shttp://127.0.0.1:1",
        "-A",
        "--all-namespaces=true",
        "-nkube-system",
        "secrets",
        "secret/x",
        "all",
        "SECRETS",
        "secrets.v1",
        "--profile=cpu",
        "--cache-dir=/tmp",
        "--",
        "-n",
        "x y",
        "a\nb",
        "jsonpath={.data}",
        "a=b -n kube-system",
        "app=x,--server=y",
        "deploy/x",
        "pods,secrets",
    ]
)
NOISE = st.one_of(
    NASTY,
    st.text(max_size=30),
    st.integers(-3, 3),
    st.booleans(),
    st.from_regex(r"-{0,2}[a-z0-9=./:, -]{0,20}", fullmatch=True),
)
"""What a steered model might put in any field."""


def fitting(field: str) -> st.SearchStrategy[str]:
    return st.sampled_from(PLAUSIBLE[field])


AMOUNTS = st.fixed_dictionaries(
    {}, optional={"cpu": fitting("amount"), "memory": fitting("amount")}
)
VALUES = {
    **{field: fitting(field) for field in PLAUSIBLE if field not in ("namespace", "amount")},
    "previous": st.booleans(),
    "tail": st.integers(1, 2000),
    "revision": st.integers(1, 9),
    "replicas": st.integers(0, 100),
    "limits": AMOUNTS,
    "requests": AMOUNTS,
}
VERBS = [*KUBECTL_READS, *KUBECTL_WRITES]
EVERY_FIELD = sorted([*VALUES, "namespace", "filename", "server", "all_namespaces", "args"])


def _calls_of(verb: str) -> st.SearchStrategy[dict[str, Any]]:
    """Calls of one verb that fit it (its required fields, some optional ones), with up to two
    fields, of the verb's or not, given hostile or random values."""
    action = ACTIONS[verb]
    values = {**VALUES, "resource": st.sampled_from(action.resources or PLAUSIBLE["resource"])}
    required = {field: values[field] for field in action.required}
    optional = {field: values[field] for field in action.optional}
    base = {"tool": st.just("kubectl"), "verb": st.just(verb), "namespace": fitting("namespace")}
    calls = st.fixed_dictionaries({**base, **required}, optional=optional)
    hostile = st.dictionaries(st.sampled_from(EVERY_FIELD), NOISE, max_size=2)
    return st.builds(lambda call, bad: {**call, **bad}, calls, hostile)


CALLS = st.sampled_from(VERBS).flatmap(_calls_of)
ALLOWED = frozenset({"production", "shop"})


def test_no_valid_call_builds_a_forbidden_argv() -> None:
    valid_per_verb: Counter[str] = Counter()

    @settings(
        max_examples=1500,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(CALLS)
    def check(fields: dict[str, Any]) -> None:
        try:
            valid = KubectlCall.model_validate(fields)
        except ValidationError:
            return
        valid_per_verb[valid.verb] += 1
        _check_argv(valid)

    check()
    assert set(valid_per_verb) == set(VERBS), valid_per_verb  # not vacuous
    assert min(valid_per_verb.values()) >= 3, valid_per_verb


def _check_argv(valid: KubectlCall) -> None:
    built = argv(valid)
    namespace_flags = [a for a in built if a.startswith(("--namespace", "-n"))]
    assert namespace_flags == [f"--namespace={valid.namespace}"]
    flags = built[: built.index("--")] if "--" in built else built
    positional = built[len(flags) + 1 :]
    assert built.count("--") <= 1
    model_values = {str(v) for v in valid.model_dump(exclude_none=True).values()}
    for arg in flags:
        name = arg.split("=", 1)[0]
        assert name not in FORBIDDEN or arg == f"--namespace={valid.namespace}", built
        if arg.startswith("-"):
            assert name.startswith("--") and name[2:].replace("-", "").isalpha(), built
            assert name not in model_values, built  # a value never stands as a flag
            continue
        assert arg in ACTIONS[valid.verb].words or arg in ("pod", "node"), built
    assert not any(arg.startswith("-") for arg in positional), built
    # No resource type named is Secrets (an object may be *named* `secrets`: `top pod secrets`).
    types = [valid.resource or "", *(p.split("/")[0] for p in positional if "/" in p)]
    if positional and positional[0] == valid.resource:
        types.append(positional[0])
    for kind in types:
        assert kind.split(".")[0] not in ("secret", "secrets", "all"), built
    policy = KubectlPolicy(allowed_namespaces=ALLOWED, approved=True)
    if kubectl.check(valid, policy) is None:
        assert valid.namespace in ALLOWED
    else:
        assert valid.namespace not in ALLOWED
    if ACTIONS[valid.verb].writes:
        assert kubectl.check(valid, KubectlPolicy(allowed_namespaces=ALLOWED)) is not None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*KUBECTL_READS, *KUBECTL_WRITES]), st.sampled_from(sorted(ALLOWED)))
def test_every_verb_has_a_valid_call_in_each_allowed_namespace(verb: str, ns: str) -> None:
    """The property above is not vacuous: each verb has calls that validate and run."""
    needs = {
        "resource": {"delete": "pod", "top": "pods", "get": "pods", "describe": "pods"}.get(
            verb, "deployment"
        ),
        "name": "my-app",
        "replicas": 1,
        "limits": {"memory": "1Gi"},
    }
    fields = {k: v for k, v in needs.items() if k in ACTIONS[verb].required}
    if verb == "logs":
        fields = {"name": "my-app"}
    if verb == "set-resources":
        fields["limits"] = needs["limits"]
    valid = call(verb=verb, namespace=ns, **fields)
    assert kubectl.check(valid, KubectlPolicy(allowed_namespaces=ALLOWED, approved=True)) is None
    assert argv(valid).count(f"--namespace={ns}") == 1


def test_write_verbs_exist_only_behind_an_approved_gate() -> None:
    """D12: in a step without an approved gate a write cannot even be expressed; the model
    reads which verbs it has. Behind the gate the same call is a valid decision."""
    from pydantic import ValidationError

    from punchingfist.runtime.agent.decisions import decision_model

    delete = {
        "tool": "kubectl",
        "verb": "delete",
        "resource": "pod",
        "name": "api-0",
        "namespace": "payments",
    }
    turn = {"thought": "t", "action": {"kind": "tool_calls", "calls": [delete]}}
    with pytest.raises(ValidationError, match="rollout-history"):
        decision_model(("kubectl",), (), False).model_validate(turn)
    decision = decision_model(("kubectl",), (), False, True).model_validate(turn)
    assert decision.action.calls[0].verb == "delete"
