"""OperatorConfig `spec.runbooks`: what admission accepts, how runbooks match alerts, and that
the `runbook` tool reads only runbooks it listed (ConfigMaps through an injected reader)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.runspec import RunbookConfigMaps, RunbookGit, RunbooksTask, ToolSpec
from punchingfist.controller.admission import Rejected, review_plain
from punchingfist.runs.report import _answer
from punchingfist.runtime.agent.decisions import FinalAnswer, RunbookCall
from punchingfist.runtime.agent.toolbox import Toolbox, build_toolbox
from punchingfist.runtime.tools import runbook
from tests.agent_support import agent_spec
from tests.unit.test_agent_loop import final

CRASH = """---
title: Pod crash looping
alertname: [KubePodCrashLooping, KubePodNotReady]
labels: {namespace: [payments, shop]}
---
1. Read the last logs of the crashing container.
"""
DISK = """---
title: Disk full
alertname: NodeDiskFull
---
Free space.
"""
README = "# Runbooks\nNot a runbook: no front matter.\n"
ALERT = {"alertname": "KubePodCrashLooping", "labels": {"namespace": "payments", "pod": "api-1"}}


def config(runbooks: Any) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "c", "namespace": "punchingfist"},
        "spec": {"runbooks": runbooks},
    }


@pytest.mark.parametrize(
    "runbooks",
    [
        {"git": {"url": "https://github.com/company/runbooks", "ref": "v2", "path": "alerts"}},
        {"repository": "https://github.com/company/runbooks", "branch": "main"},
        {"configMaps": {"selector": {"punchingfist.io/runbook": "true"}}},
        {
            "configMaps": {"names": ["runbooks"], "namespace": "ops"},
            "git": {
                "url": "https://git.example.com/r.git",
                "credentialsSecret": {"secretRef": "runbooks-token"},
            },
        },
    ],
)
def test_admission_accepts_git_and_configmap_sources(runbooks: dict[str, Any]) -> None:
    review_plain(config(runbooks))


@pytest.mark.parametrize(
    ("runbooks", "field", "says"),
    [
        ({"git": {"url": "file:///srv/runbooks"}}, "spec.runbooks.git.url", "https://"),
        ({"git": {"url": "git@github.com:c/r.git"}}, "spec.runbooks.git.url", "https://"),
        ({"git": {"url": "ext::sh -c id"}}, "spec.runbooks.git.url", "https://"),
        ({"git": {"url": "https://u:p@github.com/c/r"}}, "spec.runbooks.git.url", "credentials"),
        ({"git": {"url": "https://h/r", "ref": "--upload-pack=x"}}, "spec.runbooks.git.ref", ""),
        ({"git": {"url": "https://h/r", "ref": "a/../b"}}, "spec.runbooks.git.ref", ".."),
        ({"git": {"url": "https://h/r", "path": "../etc"}}, "spec.runbooks.git.path", ".."),
        ({"configMaps": {}}, "spec.runbooks.configMaps", "names or a selector"),
        ({"configMaps": {"names": ["a"], "selector": {"x": "y"}}}, "spec.runbooks.configMaps", ""),
        ({"configMaps": {"selector": {"x": "$(id)"}}}, "spec.runbooks.configMaps", "label"),
        ({"repository": "https://h/r", "syncInterval": "1h"}, "spec.runbooks", "syncInterval"),
        ({}, "spec.runbooks", "give git, configMaps or both"),
    ],
)
def test_admission_refuses_a_bad_source_naming_the_field(
    runbooks: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(Rejected) as caught:
        review_plain(config(runbooks))
    assert f"{field}: " in str(caught.value) and says in str(caught.value)


def test_front_matter_declares_what_a_runbook_matches() -> None:
    crash = runbook.parse("git/crash.md", CRASH)
    assert crash is not None and crash.title == "Pod crash looping"
    assert crash.text.startswith("1. Read the last logs")
    assert crash.matches(ALERT)
    assert crash.matches({"labels": {"alertname": "KubePodNotReady", "namespace": "shop"}})
    assert not crash.matches(ALERT | {"labels": {"namespace": "billing"}})
    assert not crash.matches({"alertname": "NodeDiskFull", "labels": {"namespace": "shop"}})
    assert not crash.matches({"alertname": "KubePodCrashLooping"})  # no namespace label
    everything = runbook.parse("git/general.md", "---\ntitle: On call basics\n---\nhi\n")
    assert everything is not None and everything.matches({}) and everything.matches(ALERT)
    assert runbook.parse("git/README.md", README) is None
    for broken in ("---\ntitle: x\n", "---\n[a\n---\n", "---\nlabels: [a]\n---\n"):
        with pytest.raises(ValueError):
            runbook.parse("git/x.md", broken)


def test_hostile_alert_labels_only_fail_to_match() -> None:
    crash = runbook.parse("git/crash.md", CRASH)
    assert crash is not None
    hostile = {"alertname": "$(touch /tmp/pwned)", "labels": {"namespace": "../../etc"}}
    assert not crash.matches(hostile)
    assert not crash.matches({"alertname": ["KubePodCrashLooping"], "labels": "payments"})


def test_a_checkout_gives_its_markdown_files_never_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "pods").mkdir()
    (tmp_path / "pods" / "crash.md").write_text(CRASH)
    (tmp_path / "README.md").write_text(README)
    (tmp_path / "notes.txt").write_text(DISK)
    (tmp_path / "broken.md").write_text("---\nlabels: 3\n---\n")
    secret = tmp_path.parent / f"{tmp_path.name}-secret.md"
    secret.write_text("---\ntitle: stolen\n---\ntoken\n")
    (tmp_path / "evil.md").symlink_to(secret)
    loaded = runbook.Loaded()
    runbook.from_directory(tmp_path, loaded)
    assert [r.name for r in loaded.runbooks] == ["git/pods/crash.md"]
    assert any("evil.md: not a regular file" in p for p in loaded.problems)
    assert any("broken.md: labels must be a mapping" in p for p in loaded.problems)


def configmaps(
    namespace: str = "punchingfist",
) -> tuple[runbook.ConfigMapReader, list[tuple[RunbookConfigMaps, str]]]:
    asked: list[tuple[RunbookConfigMaps, str]] = []

    def read(source: RunbookConfigMaps, ns: str) -> list[dict[str, Any]]:
        asked.append((source, ns))
        return [
            {"metadata": {"name": "runbooks"}, "data": {"crash.md": CRASH, "disk.md": DISK}},
            {"metadata": {"name": "other"}, "data": {"README.md": README, "x.json": "{}"}},
        ]

    return read, asked


def tool(sources: RunbooksTask, alert: dict[str, Any] = ALERT) -> runbook.RunbookTool:
    read, _ = configmaps()
    return runbook.RunbookTool(sources, alert, {"PF_NAMESPACE": "punchingfist"}, read)


SOURCES = RunbooksTask(config_maps=RunbookConfigMaps(selector={"punchingfist.io/runbook": "true"}))


def test_list_gives_the_matching_runbooks_and_read_gives_one() -> None:
    read, asked = configmaps()
    rb = runbook.RunbookTool(SOURCES, ALERT, {"PF_NAMESPACE": "punchingfist"}, read)
    listed = rb.run("list", None)
    assert listed.status == "ok"
    assert json.loads(listed.output)["runbooks"] == [
        {
            "name": "configmap/runbooks/crash.md",
            "title": "Pod crash looping",
            "alertname": ["KubePodCrashLooping", "KubePodNotReady"],
            "labels": {"namespace": ["payments", "shop"]},
        }
    ]
    content = rb.run("read", "configmap/runbooks/crash.md")
    assert content.status == "ok" and "Read the last logs" in content.output
    assert content.output.startswith("# Pod crash looping")
    assert [ns for _, ns in asked] == ["punchingfist"]  # loaded once, in the run's namespace


@pytest.mark.parametrize(
    "name",
    ["configmap/runbooks/disk.md", "configmap/other/README.md", "configmap/nope.md", None],
)
def test_read_refuses_anything_list_did_not_give(name: str | None) -> None:
    result = tool(SOURCES).run("read", name)
    assert result.status == "refused"


@pytest.mark.parametrize("name", ["../etc/passwd", "/etc/passwd", "crash.md", "git/$(id)", ""])
def test_a_path_cannot_even_be_asked_for(name: str) -> None:
    with pytest.raises(ValidationError):
        RunbookCall(tool="runbook", action="read", name=name)


def test_a_name_that_climbs_out_is_not_a_listed_name() -> None:
    call = RunbookCall(tool="runbook", action="read", name="configmap/runbooks/../../x.md")
    assert tool(SOURCES).run("read", call.name).status == "refused"


def test_a_source_that_fails_is_said_and_the_others_still_count() -> None:
    def failing(source: RunbookConfigMaps, ns: str) -> list[dict[str, Any]]:
        raise runbook.RunbookError("cannot read ConfigMaps: configmaps is forbidden")

    alone = runbook.RunbookTool(SOURCES, ALERT, {}, failing).run("list", None)
    assert alone.status == "error" and "forbidden" in (alone.error or "")


def test_the_git_token_travels_in_the_environment_never_the_argv() -> None:
    git = RunbookGit(url="https://git.example.com/r.git", credentials_env="RUNBOOKS_GIT_TOKEN")
    env = runbook.git_env(git, {"RUNBOOKS_GIT_TOKEN": "bob:s3cret"}, {"PATH": "/bin"})
    assert env["GIT_ALLOW_PROTOCOL"] == "https" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic Ym9iOnMzY3JldA=="  # bob:s3cret
    bare = runbook.git_env(git, {"RUNBOOKS_GIT_TOKEN": "tok"}, {})
    assert bare["GIT_CONFIG_VALUE_0"] == "Authorization: Basic eC1hY2Nlc3MtdG9rZW46dG9r"
    assert "GIT_CONFIG_COUNT" not in runbook.git_env(git, {}, {})


def test_the_compiler_gives_every_agent_step_the_tool_and_the_token() -> None:
    spec = OperatorConfigSpec.model_validate(
        {
            "runbooks": {
                "git": {
                    "url": "https://git.example.com/r.git",
                    "ref": "v2",
                    "path": "alerts/",
                    "credentialsSecret": {"secretRef": "runbooks-token", "key": "pat"},
                },
                "configMaps": {"selector": {"team": "sre"}},
            }
        }
    )
    task = agent_spec({"goal": "g", "tools": ["kubectl"]}, {"provider": "local"}, config=spec)
    assert task.agent is not None and [t.name for t in task.agent.tools] == ["kubectl", "runbook"]
    assert task.agent.runbooks == RunbooksTask(
        git=RunbookGit(
            url="https://git.example.com/r.git",
            ref="v2",
            path="alerts",
            credentials_env="RUNBOOKS_GIT_TOKEN",
        ),
        config_maps=RunbookConfigMaps(selector={"team": "sre"}),
    )
    without = agent_spec({"goal": "g", "tools": ["kubectl"]}, {"provider": "local"})
    assert without.agent is not None and without.agent.runbooks is None
    assert [t.name for t in without.agent.tools] == ["kubectl"]


def test_the_token_reaches_agent_pods_from_its_secret() -> None:
    from punchingfist.compiler import compile_workflow
    from tests.builders import make_workflow

    spec = OperatorConfigSpec.model_validate(
        {"runbooks": {"git": {"url": "https://h/r", "credentialsSecret": {"secretRef": "rb"}}}}
    )
    workflow = make_workflow([{"name": "investigate", "type": "agent", "goal": "g"}])
    manifest = compile_workflow(workflow, config=spec).manifest
    (template,) = [t for t in manifest["spec"]["templates"] if t["name"] == "investigate"]
    env = {e["name"]: e for e in template["container"]["env"]}
    assert env["RUNBOOKS_GIT_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "rb", "key": "token"}


def toolbox(tools: list[ToolSpec], runbooks: RunbooksTask | None) -> Toolbox:
    read, _ = configmaps()
    return build_toolbox(
        tools,
        environ={},
        approved=False,
        require_approval=[],
        allowed_namespaces=None,
        render=str,
        runbooks=runbooks,
        alert=ALERT,
        read_configmaps=read,
    )


def test_the_tool_is_built_only_with_sources_and_its_name_is_what_the_answer_cites() -> None:
    assert toolbox([ToolSpec(name="runbook")], None).builtin == ()
    box = toolbox([ToolSpec(name="runbook")], SOURCES)
    assert box.builtin == ("runbook",)
    ((_, _, listed),) = box.run_all([RunbookCall(tool="runbook", action="list")])
    assert "configmap/runbooks/crash.md" in listed.output
    answer = FinalAnswer.model_validate(final(runbook="configmap/runbooks/crash.md")["action"])
    assert "     runbook followed: configmap/runbooks/crash.md" in _answer(
        answer.model_dump(), replayed=False
    )


def test_the_slack_message_cites_the_runbook_the_agent_followed() -> None:
    from punchingfist.runtime.sinks.findings import gather
    from punchingfist.runtime.sinks.slack import result_blocks

    answer = final(runbook="git/pods/crash.md")["action"]
    context = {
        "source": {"data": {"alert": ALERT}},
        "workflow": {"name": "wf"},
        "steps": {"investigate": {"kind": "agent", "success": True, "result": answer}},
    }
    findings = gather(context, {})
    assert findings.runbook == "git/pods/crash.md"
    assert findings.details()["runbook"] == "git/pods/crash.md"
    text = json.dumps(result_blocks(findings, None, ""))
    assert "*Runbook followed*\\ngit/pods/crash.md" in text
    without = gather(context | {"steps": {}}, {})
    assert without.runbook is None and "Runbook" not in json.dumps(result_blocks(without, None, ""))


def test_a_script_of_the_workflow_named_runbook_wins() -> None:
    spec = OperatorConfigSpec.model_validate(
        {"runbooks": {"configMaps": {"names": ["team-runbooks"]}}}
    )
    script = {"name": "runbook", "command": ["/usr/local/bin/rb.sh"]}
    task = agent_spec(
        {"goal": "g", "tools": ["kubectl", script]}, {"provider": "local"}, config=spec
    )
    assert task.agent is not None and task.agent.runbooks is None
    assert [(t.name, t.command) for t in task.agent.tools] == [
        ("kubectl", None),
        ("runbook", ["/usr/local/bin/rb.sh"]),
    ]
    box = toolbox(task.agent.tools, SOURCES)
    assert box.builtin == ("kubectl",)
    assert "runbook" in box.script_calls


def fake_kubectl(tmp_path: Path, answer: dict[str, Any], code: int = 0) -> tuple[str, Path]:
    """A `kubectl` that records its argv and prints `answer` (or fails with `code`)."""
    log = tmp_path / "argv.json"
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"print({json.dumps(json.dumps(answer))})\n"
        f"sys.stderr.write('Error from server (NotFound): configmaps \"x\" not found\\n')\n"
        f"sys.exit({code})\n"
    )
    script.chmod(0o755)
    return str(script), log


def test_configmaps_are_read_with_kubectl_by_selector_or_by_name(tmp_path: Path) -> None:
    item = {"kind": "ConfigMap", "metadata": {"name": "team"}, "data": {"crash.md": CRASH}}
    binary, log = fake_kubectl(tmp_path, {"kind": "List", "items": [item]})
    read = runbook.kubectl_reader(binary, {}, 10)
    assert read(RunbookConfigMaps(selector={"team": "sre", "a": "b"}), "ops") == [item]
    assert json.loads(log.read_text()) == [
        "get",
        "configmaps",
        "--namespace",
        "ops",
        "--output",
        "json",
        "--selector",
        "a=b,team=sre",
        "--",
    ]
    binary, log = fake_kubectl(tmp_path, item)  # one name: kubectl prints the object itself
    assert read(RunbookConfigMaps(names=["team"]), "ops") == [item]
    assert json.loads(log.read_text())[-2:] == ["--", "team"]
    binary, _ = fake_kubectl(tmp_path, {}, code=1)
    with pytest.raises(runbook.RunbookError, match="NotFound"):
        read(RunbookConfigMaps(names=["x"]), "ops")
