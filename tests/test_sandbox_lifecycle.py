"""`down` leaves a clean machine and `up` brings the same state dir back.

It takes down the session's shared sandbox and brings it up again (2 nodes,
demo pods), since two sandboxes cannot share the bridge and node addresses.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from demo.sandbox import claim, procs
from demo.sandbox.api import BRIDGE, leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


def _pids_of_state(state: Path) -> list[str]:
    """Live sandbox processes naming the state directory ("pid: cmdline").

    Consoles other tests (or people) run against the sandbox name it too; they are not ours.
    """
    out = []
    needle = str(state).encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            status = (p / "status").read_text()
        except OSError:
            continue
        ours = any(k in cmd for k in (b"sandbox-control", b"sshd", b"demo.sandbox.node",
                                      b"shim.py"))
        if needle in cmd and ours and "State:\tZ" not in status:
            shown = cmd.replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{p.name}: {shown}")
    return out


def test_down_leaves_nothing_and_up_comes_back(sandbox) -> None:
    state = sandbox.state_dir
    before = {d.name: d.pid for d in procs.load(state / "pids")}
    assert {"etcd", "apiserver"} <= set(before)

    assert sandbox.down() == []
    assert not sandbox.is_up()
    for pid in before.values():
        assert not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(
            f"/proc/{pid}/status").read_text(), f"pid {pid} still runs"
    assert _pids_of_state(state) == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert BRIDGE not in links
    assert f"master {BRIDGE}" not in links
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns.strip() == "" or "gkd" not in netns
    assert str(state) not in Path("/proc/mounts").read_text()
    assert list(Path("/sys/fs/cgroup").glob("*/kubepods")) == []
    assert leftovers(state) == []
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True,
                            text=True).stdout
    assert "10.88." not in routes, "no route (bridge or guard) for the sandbox network is left"
    assert claim.owner() != state.resolve(), "down gives the host claim back"
    # status after down says so instead of failing.
    assert sandbox.status()["up"] is False

    # Up again on the same state dir, as the rest of the session expects it.
    sandbox.up(nodes=2, demo=True)
    assert sandbox.is_up()
    t = sandbox.timings
    print(f"warm sandbox up (2 nodes, demo): {t['total']:.1f} s; phases: "
          + ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total"))
    assert t["total"] < 120


def test_up_restarts_a_sandbox_whose_daemon_died(sandbox) -> None:
    import signal

    dead = next(d for d in procs.load(sandbox.state_dir / "pids") if d.name == "sshd-node-2")
    os.kill(dead.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while dead.alive() and time.monotonic() < deadline:  # the kill is asynchronous
        time.sleep(0.05)
    assert not dead.alive()
    sandbox.up(nodes=2, demo=True)
    now = {d.name: d for d in procs.load(sandbox.state_dir / "pids")}
    assert now["sshd-node-2"].alive() and now["sshd-node-2"].pid != dead.pid
    r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "node-2", "true"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
