"""Removing what the node runtime made: one node's pods, or everything on the host."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from . import cgroups, network
from .runtime import SandboxRuntime


def _node_ip(state_dir: Path) -> str | None:
    try:
        return json.loads((state_dir / "node.json").read_text()).get("nodeIP")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _stop_runtime(state_dir: Path) -> None:
    """SIGKILL a node runtime still running on this state dir (cleanup must not race it)."""
    try:
        rec = json.loads((state_dir / "node.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    pid = rec.get("pid")
    if pid and pid != os.getpid():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            return
        if b"demo.sandbox.node" in cmd and str(state_dir).encode() in cmd:
            os.kill(pid, signal.SIGKILL)


def cleanup_state_dir(state_dir: Path | str) -> None:
    """Remove every pod of the node whose state is in ``state_dir``, and its bridge address.

    Kills the containers, deletes network namespaces, veths, cgroups and rootfs
    trees, then takes the node's address off the bridge and deletes the bridge and
    the shared kubepods cgroups if no other node still uses them.
    """
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return
    _stop_runtime(state_dir)
    node_ip = _node_ip(state_dir)
    SandboxRuntime(state_dir, node_ip or "10.88.0.1").remove_all()
    if node_ip:
        leave_host(node_ip)
    else:
        cgroups.remove_shared_if_empty()


def leave_host(node_ip: str) -> None:
    """Take this node off the bridge; the last node out also removes bridge, cgroups, /run dir."""
    last = network.release_node(node_ip)
    cgroups.remove_shared_if_empty()
    if last:
        _remove_host_dir()


def teardown_host() -> None:
    """Full tear-down after every node runtime has stopped: the bridge and shared cgroups.

    Pod namespaces named ``gkd-*`` that are still there (a runtime killed with its
    state dir lost) are deleted too; everything else on the host is left alone.
    """
    netns = Path("/run/netns")
    if netns.is_dir():
        for p in netns.iterdir():
            if p.name.startswith("gkd-"):
                network.ip("netns", "del", p.name, check=False)
    network.teardown_bridge()
    cgroups.remove_shared_if_empty()
    _remove_host_dir()


def _remove_host_dir() -> None:
    """Drop /run/gkd-sandbox once it holds nothing but the lock file."""
    d = network.HOST_DIR
    if d.is_dir() and {p.name for p in d.iterdir()} <= {"net.lock"}:
        (d / "net.lock").unlink(missing_ok=True)
        try:
            d.rmdir()
        except OSError:
            pass
