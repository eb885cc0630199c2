"""What tearing the node down takes beyond stopping processes: the containers' processes, the
shims, the pods' cgroups, the mounts under the cluster's state and the files the kubelet puts
outside it. Each function is safe to run when there is nothing to clean.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")
POD_CGROUP = "kubepods"


def _pod_cgroups() -> list[Path]:
    """Every cgroup under kubepods, in every v1 hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUPS.iterdir() if CGROUPS.exists() else []:
        top = hierarchy / POD_CGROUP
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_pod_processes(timeout: float = 15) -> int:
    """SIGKILL every process in the pods' cgroups (a container's PID 1 may ignore SIGTERM: a
    bare `sleep` does) until none is left. Returns how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = set()
        for cgroup in _pod_cgroups():
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (cgroup / "cgroup.procs").read_text().split()}
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.2)
    return len(killed)


def remove_pod_cgroups() -> int:
    removed = 0
    for cgroup in _pod_cgroups():
        with contextlib.suppress(OSError):
            cgroup.rmdir()
            removed += 1
    return removed


def kill_shims(socket: Path) -> int:
    """containerd's shims outlive it; ours are the ones started for its socket."""
    needle = os.fsencode(str(socket))
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and needle in argv:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                count += 1
    return count


def mounts_under(directory: Path) -> list[str]:
    prefix = os.path.realpath(directory) + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return points


def unmount_under(directory: Path) -> int:
    """Unmount everything mounted below `directory` (overlay root filesystems, the kubelet's
    volumes, network namespaces), deepest first; lazily when a mount is still busy."""
    count = 0
    for _ in range(3):  # a mount can hide another one at the same place
        mounts = mounts_under(directory)
        if not mounts:
            break
        for point in sorted(set(mounts), key=len, reverse=True):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
            count += 1
    return count


def remove_container_log_links(pod_logs: Path) -> int:
    """The kubelet links every container's log into /var/log/containers."""
    links = Path("/var/log/containers")
    count = 0
    for link in links.glob("*.log") if links.is_dir() else []:
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                link.unlink()
                count += 1
    return count


KUBELET_DEFAULT_DIR = Path("/var/lib/kubelet")
"""The kubelet puts its device-plugin socket here whatever --root-dir says."""


def remove_kubelet_default_dir(created_by_us: bool) -> None:
    socket = KUBELET_DEFAULT_DIR / "device-plugins" / "kubelet.sock"
    socket.unlink(missing_ok=True)
    if created_by_us:
        subprocess.run(["rm", "-rf", "--one-file-system", str(KUBELET_DEFAULT_DIR)], check=False)
