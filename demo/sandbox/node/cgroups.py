"""Pod and container cgroups laid out like kubelet's cgroupfs driver.

cgroup v1 (one hierarchy per controller)::

    /sys/fs/cgroup/<ctrl>/kubepods/<burstable|besteffort>/pod<uid>/<container-id>
    /sys/fs/cgroup/<ctrl>/kubepods/pod<uid>/<container-id>          (Guaranteed)

cgroup v2 (unified) uses the same relative paths under /sys/fs/cgroup, with
cpu.max / memory.max instead of cpu.cfs_quota_us / memory.limit_in_bytes.

``kubepods`` and its QoS children are shared by every sandbox node on the host.
The ones the sandbox created are listed in a host-wide marker file, so the last
node to leave removes them and nobody ever removes a cgroup the sandbox did not make.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
CFS_PERIOD_US = 100_000
HOST_DIR = Path("/run/gkd-sandbox")
CREATED_MARKER = HOST_DIR / "created-cgroups"


def is_v2(root: Path = CGROUP_ROOT) -> bool:
    """True when ``root`` is a cgroup2 mount (unified hierarchy)."""
    return (root / "cgroup.controllers").exists()


@dataclass(frozen=True)
class Limits:
    """Resource limits for one cgroup; None means unlimited."""

    cpu_millis: int | None = None
    memory_bytes: int | None = None
    cpu_request_millis: int | None = None


def pod_relpath(uid: str, qos: str) -> str:
    """kubepods/<qos>/pod<uid>, or kubepods/pod<uid> for Guaranteed pods."""
    if qos == "Guaranteed":
        return f"kubepods/pod{uid}"
    return f"kubepods/{qos.lower()}/pod{uid}"


def hierarchies(root: Path = CGROUP_ROOT) -> list[Path]:
    """The hierarchy roots the sandbox places pods in."""
    if is_v2(root):
        return [root]
    return [root / c for c in V1_CONTROLLERS if (root / c).is_dir()]


def _record_created(path: Path) -> None:
    HOST_DIR.mkdir(parents=True, exist_ok=True)
    with open(CREATED_MARKER, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(str(path) + "\n")


def _created_shared() -> list[Path]:
    try:
        return [Path(p) for p in CREATED_MARKER.read_text().split()]
    except FileNotFoundError:
        return []


def _enable_v2_controllers(parent: Path) -> None:
    # In v2, a child only gets cpu/memory/pids files if its parent delegates them.
    try:
        avail = (parent / "cgroup.controllers").read_text().split()
        want = [c for c in ("cpu", "memory", "pids") if c in avail]
        if want:
            (parent / "cgroup.subtree_control").write_text(" ".join("+" + c for c in want))
    except OSError:
        pass


def _ensure_shared(root: Path, rel: str) -> None:
    """Create kubepods[/qos] under ``root`` if missing, remembering that we did."""
    path = root
    for part in rel.split("/"):
        parent, path = path, path / part
        if is_v2(root):
            _enable_v2_controllers(parent)
        if not path.exists():
            try:
                path.mkdir()
                _record_created(path)
            except FileExistsError:
                continue
            # kubelet's weights: kubepods gets the node's CPUs, BestEffort the minimum.
            if root.name == "cpu" and part == "kubepods":
                _write(path / "cpu.shares", str((os.cpu_count() or 1) * 1024))
            elif root.name == "cpu" and part == "besteffort":
                _write(path / "cpu.shares", "2")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        pass  # controller file absent on this kernel/hierarchy: limit not enforceable, not fatal


def apply_limits(path: Path, limits: Limits, hierarchy: Path) -> None:
    """Write CPU quota and memory limit (and CPU weight from requests) into ``path``."""
    if is_v2(hierarchy):
        if limits.cpu_millis:
            _write(path / "cpu.max", f"{limits.cpu_millis * CFS_PERIOD_US // 1000} {CFS_PERIOD_US}")
        if limits.memory_bytes:
            _write(path / "memory.max", str(limits.memory_bytes))
        return
    ctrl = hierarchy.name
    if ctrl == "cpu":
        if limits.cpu_millis:
            _write(path / "cpu.cfs_period_us", str(CFS_PERIOD_US))
            _write(
                path / "cpu.cfs_quota_us", str(max(1000, limits.cpu_millis * CFS_PERIOD_US // 1000))
            )
        if limits.cpu_request_millis:
            _write(path / "cpu.shares", str(max(2, limits.cpu_request_millis * 1024 // 1000)))
    elif ctrl == "memory" and limits.memory_bytes:
        _write(path / "memory.limit_in_bytes", str(limits.memory_bytes))


def create_pod(uid: str, qos: str, limits: Limits, root: Path = CGROUP_ROOT) -> list[Path]:
    """Create the pod cgroup in every hierarchy; return the pod paths."""
    rel = pod_relpath(uid, qos)
    out = []
    for h in hierarchies(root):
        _ensure_shared(h, rel.rsplit("/", 1)[0])
        p = h / rel
        p.mkdir(exist_ok=True)
        if is_v2(root):
            _enable_v2_controllers(p)
        apply_limits(p, limits, h)
        out.append(p)
    return out


def create_container(
    uid: str, qos: str, container_id: str, limits: Limits, root: Path = CGROUP_ROOT
) -> list[Path]:
    """Create the container cgroup under the pod cgroup in every hierarchy."""
    rel = pod_relpath(uid, qos) + "/" + container_id
    out = []
    for h in hierarchies(root):
        p = h / rel
        p.mkdir(exist_ok=True)
        apply_limits(p, limits, h)
        out.append(p)
    return out


def _rmdir(path: Path, wait: float = 2.0) -> bool:
    # A cgroup whose last task just died can stay busy for a moment.
    deadline = time.monotonic() + wait
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def kill_all(path: Path) -> None:
    """SIGKILL every task left in a cgroup (the pod's processes only)."""
    try:
        pids = (path / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def oom_killed(uid: str, qos: str, container_id: str, root: Path = CGROUP_ROOT) -> bool:
    """True when the kernel's OOM killer killed a task of this container cgroup."""
    rel = pod_relpath(uid, qos) + "/" + container_id
    if is_v2(root):
        events, key = root / rel / "memory.events", "oom_kill"
    else:
        events, key = root / "memory" / rel / "memory.oom_control", "oom_kill"
    try:
        for line in events.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value) > 0
    except (OSError, ValueError):
        pass
    return False


def remove_container(uid: str, qos: str, container_id: str, root: Path = CGROUP_ROOT) -> None:
    """Remove one container cgroup (its tasks are killed first)."""
    for h in hierarchies(root):
        p = h / pod_relpath(uid, qos) / container_id
        if p.exists():
            kill_all(p)
            _rmdir(p)


def remove_pod(uid: str, qos: str, root: Path = CGROUP_ROOT) -> None:
    """Remove the pod cgroup and every container cgroup below it."""
    for h in hierarchies(root):
        p = h / pod_relpath(uid, qos)
        if not p.exists():
            continue
        for child in p.iterdir():
            if child.is_dir():
                kill_all(child)
                _rmdir(child)
        kill_all(p)
        _rmdir(p)


def remove_shared_if_empty() -> None:
    """Remove kubepods and its QoS cgroups that the sandbox created, if no pod is left in them."""
    created = _created_shared()
    # Deepest first, so kubepods/besteffort goes before kubepods.
    for p in sorted(created, key=lambda x: len(x.parts), reverse=True):
        if p.exists():
            _rmdir(p, wait=0.2)
    left = [p for p in created if p.exists()]
    if left:
        CREATED_MARKER.write_text("".join(f"{p}\n" for p in left))
    else:
        CREATED_MARKER.unlink(missing_ok=True)
