"""The runbook tool against a real git repository: a local bare repository with two runbooks,
fetched with the real `git` over file:// (the OperatorConfig allows https:// only; the runtime's
TaskSpec is where a test may name a file:// URL), and an agent step whose scripted model lists,
reads and cites one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.runspec import RunbookGit, RunbooksTask, StepResult, TaskSpec
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.runtime.tools import runbook
from tests.agent_support import agent_spec
from tests.fakes.openai_server import fake_openai

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

CRASH = """---
title: Pod crash looping
alertname: KubePodCrashLooping
labels: {namespace: payments}
---
Step 1: read the previous container's logs (kubectl logs --previous).
"""
DISK = """---
title: Disk full
alertname: NodeDiskFull
---
Free space on the node.
"""
ALERT = {"alertname": "KubePodCrashLooping", "labels": {"namespace": "payments"}}
ENV = {"PF_EVENT": json.dumps({"alert": ALERT}), "PATH": "/usr/bin:/bin"}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """file:// URL of a bare repository whose `main` holds runbooks/{pods/crash,disk}.md and a
    README, tagged v1; and the commit of an older version without the disk runbook."""
    root = tmp_path_factory.mktemp("runbooks")
    bare = root / "runbooks.git"
    work = root / "work"
    git("init", "--quiet", "--bare", str(bare), cwd=root)
    git("init", "--quiet", str(work), cwd=root)
    (work / "runbooks" / "pods").mkdir(parents=True)
    (work / "runbooks" / "pods" / "crash.md").write_text(CRASH)
    (work / "README.md").write_text("# Our runbooks\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "crash runbook", cwd=work)
    older = git("rev-parse", "HEAD", cwd=work)
    (work / "runbooks" / "disk.md").write_text(DISK)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "disk runbook", cwd=work)
    git("tag", "v1", cwd=work)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", "v1", cwd=work)
    return f"file://{bare}", older


def names(tool: runbook.RunbookTool) -> list[str]:
    return [r.name for r in tool.load().runbooks]


def never(*_: Any) -> list[dict[str, Any]]:
    raise AssertionError("no ConfigMap source is configured")


@pytest.mark.parametrize("ref", ["main", "v1"])
def test_a_branch_or_tag_gives_its_runbooks_and_list_only_the_matching(
    repository: tuple[str, str], ref: str
) -> None:
    url, _ = repository
    sources = RunbooksTask(git=RunbookGit(url=url, ref=ref, path="runbooks"))
    tool = runbook.RunbookTool(sources, ALERT, ENV, never, {"PATH": ENV["PATH"]})
    assert names(tool) == ["git/disk.md", "git/pods/crash.md"]
    listed = json.loads(tool.run("list", None).output)["runbooks"]
    assert [r["name"] for r in listed] == ["git/pods/crash.md"]
    content = tool.run("read", "git/pods/crash.md")
    assert content.status == "ok" and "kubectl logs --previous" in content.output
    assert tool.run("read", "git/disk.md").status == "refused"  # not this alert's


def test_a_commit_is_read_as_it_was(repository: tuple[str, str]) -> None:
    url, older = repository
    tool = runbook.RunbookTool(
        RunbooksTask(git=RunbookGit(url=url, ref=older)), ALERT, ENV, never, {"PATH": ENV["PATH"]}
    )
    assert names(tool) == ["git/runbooks/pods/crash.md"]  # whole repository; README skipped


def test_a_missing_ref_or_path_is_an_error_the_model_reads(repository: tuple[str, str]) -> None:
    url, _ = repository
    for git_source in (
        RunbookGit(url=url, ref="no-such-branch"),
        RunbookGit(url=url, path="nowhere"),
    ):
        result = runbook.RunbookTool(
            RunbooksTask(git=git_source), ALERT, ENV, never, {"PATH": ENV["PATH"]}
        ).run("list", None)
        assert result.status == "error"
        assert "no-such-branch" in (result.error or "") or "nowhere" in (result.error or "")


def test_a_file_url_is_refused_by_git_unless_it_is_the_url_given(tmp_path: Path) -> None:
    # GIT_ALLOW_PROTOCOL follows the configured URL: an https source can never read a path.
    env = runbook.git_env(RunbookGit(url="https://example.invalid/r"), {}, {"PATH": ENV["PATH"]})
    with pytest.raises(runbook.RunbookError, match="transport 'file' not allowed"):
        runbook.clone(RunbookGit(url=f"file://{tmp_path}"), tmp_path / "c", env, 10)


def spec_with(url: str) -> TaskSpec:
    config = OperatorConfigSpec.model_validate(
        {"runbooks": {"git": {"url": "https://example.invalid/runbooks", "path": "runbooks"}}}
    )
    return agent_spec({"goal": "g", "tools": ["kubectl"]}, {"provider": "local"}, config=config)


def test_the_agent_lists_reads_and_cites_a_runbook(repository: tuple[str, str]) -> None:
    url, _ = repository
    compiled = spec_with(url)
    assert compiled.agent is not None and compiled.agent.runbooks is not None
    agent = compiled.agent.model_copy(
        update={"runbooks": RunbooksTask(git=RunbookGit(url=url, path="runbooks"))}
    )

    def calls(*items: dict[str, Any]) -> dict[str, Any]:
        return {"thought": "look", "action": {"kind": "tool_calls", "calls": list(items)}}

    answer = {
        "kind": "final_answer",
        "summary": "api-1 crash loops; followed the crash runbook",
        "problem_summary": "p",
        "root_cause": "r",
        "can_auto_fix": False,
        "confidence": 0.7,
        "escalation_notes": "e",
        "evidence": ["call-2"],
        "runbook": "git/pods/crash.md",
    }
    turns = [
        calls({"tool": "runbook", "action": "list"}),
        calls({"tool": "runbook", "action": "read", "name": "git/pods/crash.md"}),
        {"thought": "done", "action": answer},
    ]
    with fake_openai(turns) as server:
        llm = agent.llm.model_copy(update={"endpoint": server.url, "model": "m"})
        spec = compiled.model_copy(update={"agent": agent.model_copy(update={"llm": llm})})
        result = run_agent_step(spec, ENV)
        requests = server.requests
    assert result["success"], result["error"]
    assert [(c["tool"], c["status"]) for c in result["tool_calls"]] == [
        ("runbook", "ok"),
        ("runbook", "ok"),
    ]
    assert "runbook: the team's runbooks" in requests[0]["messages"][0]["content"]
    assert "kubectl logs --previous" in json.dumps(requests[2]["messages"])
    step = StepResult.model_validate(result)
    assert step.result["runbook"] == "git/pods/crash.md"
