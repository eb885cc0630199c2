"""What a run records: one `NodeStatus` per node (Argo's node names and phases) and a result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from punchingfist.engine.phases import PENDING


@dataclass
class NodeStatus:
    """One node of the run. Observers receive it live; treat it as read-only.

    `id` follows Argo's node names: `<run>` for the entrypoint DAG, `<run>.<task>` for its
    tasks, `<run>.onExit` and `<run>.onExit.<task>` for the exit handler.
    """

    id: str
    display_name: str
    template: str
    type: str
    """Argo's node type: DAG, Pod, Suspend, Skipped, Omitted."""
    phase: str = PENDING
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    workdir: Path | None = None
    """The directory of the last attempt: cwd, result files, stdout.log, stderr.log."""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """The run as observers see it from the start."""

    name: str
    uid: str
    workflow: str
    namespace: str
    workdir: Path
    started_at: datetime
    parameters: Mapping[str, str]
    labels: Mapping[str, str]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """A finished run: its phase, every node, and the workflow's global outputs."""

    info: RunInfo
    phase: str
    """Succeeded, Failed or Error (what the exit handler saw, then its own outcome)."""
    message: str
    finished_at: datetime
    nodes: Mapping[str, NodeStatus]
    outputs: Mapping[str, str]
    """Global output parameters (`globalName`), e.g. `pf_result_<step>`."""

    @property
    def name(self) -> str:
        return self.info.name

    def node(self, display_name: str, *, exit_handler: bool = False) -> NodeStatus:
        """The task node called `display_name` (in the exit handler when asked)."""
        prefix = f"{self.info.name}.onExit." if exit_handler else f"{self.info.name}."
        node = self.nodes.get(prefix + display_name)
        if node is None:
            raise KeyError(f"run {self.info.name} has no node {display_name!r}")
        return node
