"""The node runtime's container layer on its own (no API server): real namespaces,
pivot_root, cgroups, veths, and a clean-up that leaves nothing behind.

Uses node address 10.88.200.1 so it can share the bridge with a running sandbox.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import need

from demo.sandbox.node import cgroups, network
from demo.sandbox.node.runtime import ContainerConfig, PodSandboxConfig, SandboxRuntime

NODE_IP = "10.88.200.1"
BUSYBOX = Path("/bin/busybox")
# Named busybox-*: busybox picks its applet from argv[0] unless the name starts with "busybox".
IMAGE = "sandbox.local/busybox-copy"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.sandbox


def _wait(fn, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _leftovers(uid: str, state: Path) -> list[str]:
    found = []
    if network.netns_exists(uid):
        found.append("netns")
    if network.link_exists(network.veth_name(uid)):
        found.append("veth")
    found += [str(p) for p in Path("/sys/fs/cgroup").glob(f"**/pod{uid}")]
    found += [ln for ln in Path("/proc/mounts").read_text().splitlines() if str(state) in ln]
    if (state / "pods" / uid).exists():
        found.append("state dir")
    return found


@pytest.fixture
def rt(root: None, tmp_path: Path):
    need(BUSYBOX.exists(), "needs Debian's busybox-static (/bin/busybox): run `make setup`")
    # A copy under another name: inside the container it must show up at
    # /usr/local/bin/busybox-copy, never at this host path.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy2(BUSYBOX, bin_dir / "busybox-copy")
    network.ensure_bridge(NODE_IP)
    runtime = SandboxRuntime(tmp_path / "state", NODE_IP, bin_dir=bin_dir)
    yield runtime
    runtime.remove_all()
    network.release_node(NODE_IP)
    cgroups.remove_shared_if_empty()


def _pod(qos: str = "Burstable") -> PodSandboxConfig:
    return PodSandboxConfig(str(uuid.uuid4()), "test", "web-1", qos,
                            cgroups.Limits(cpu_millis=300, memory_bytes=64 << 20))


def test_container_gets_own_namespaces_pivot_root_and_cgroups(rt: SandboxRuntime) -> None:
    pod = _pod()
    ip = rt.run_pod_sandbox(pod)
    assert ip.startswith("10.88.200.")
    httpd = ["httpd", "-f", "-p", "6060", "-h", "/etc"]
    c = ContainerConfig("web", IMAGE, args=httpd, env={"GREETING": "hi"},
                        limits=cgroups.Limits(cpu_millis=200, memory_bytes=32 << 20))
    info = rt.start_container(pod, c)
    assert info.state == "running" and len(info.id) == 64 and info.pid > 0
    pid = info.pid

    # Own PID, mount, UTS namespaces; the pod's network namespace.
    for ns in ("pid", "mnt", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(network.netns_path(pod.uid)).st_ino
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"NSpid:\t{pid}\t1\n" in status  # PID 1 inside its namespace

    # pivot_root, not chroot: maps and exe show the path inside the container.
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert " /usr/local/bin/busybox-copy\n" in maps
    assert str(rt.bin_dir) not in maps and str(rt.state_dir) not in maps
    assert os.readlink(f"/proc/{pid}/exe") == "/usr/local/bin/busybox-copy"
    assert Path(f"/proc/{pid}/root/etc/hostname").read_text().strip() == "web-1"
    assert b"GREETING=hi" in Path(f"/proc/{pid}/environ").read_bytes()

    # kubelet cgroupfs layout with limits at pod and container level.
    cg = Path(f"/proc/{pid}/cgroup").read_text()
    want = f"/kubepods/burstable/pod{pod.uid}/{info.id}"
    for ctrl in ("cpu", "memory", "pids"):
        assert f":{ctrl}:{want}\n" in cg
    cpu = Path("/sys/fs/cgroup/cpu") / want.lstrip("/")
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "20000"
    assert (cpu.parent / "cpu.cfs_quota_us").read_text().strip() == "30000"
    mem = Path("/sys/fs/cgroup/memory") / want.lstrip("/")
    assert int((mem / "memory.limit_in_bytes").read_text()) == 32 << 20

    # Reachable from the host over the bridge, like the API server's pod proxy dials it.
    def get() -> str:
        r = subprocess.run(["curl", "-s", "-m", "2", f"http://{ip}:6060/hostname"],
                           capture_output=True, text=True)
        return r.stdout.strip()

    assert _wait(get, what="httpd in the pod to answer") == "web-1"

    rt.stop_container(pod.uid, info.id, grace=0.5)
    done = rt.container_status(pod.uid, info.id)
    assert done is not None and done.state == "exited" and done.exit_code == 137
    rt.remove_pod_sandbox(pod.uid)
    assert _leftovers(pod.uid, rt.state_dir) == []


def test_exit_code_and_start_error_are_reported(rt: SandboxRuntime) -> None:
    pod = _pod("BestEffort")
    rt.run_pod_sandbox(pod)
    info = rt.start_container(pod, ContainerConfig("job", IMAGE,
                                                   args=["sh", "-c", "exit 3"]))
    done = _wait(lambda: (i := rt.container_status(pod.uid, info.id)) and i.state == "exited" and i,
                 what="exit")
    assert done.exit_code == 3 and done.reason == "Error"
    bad = rt.start_container(pod, ContainerConfig("bad", IMAGE,
                                                  command=["/no/such/binary"]))
    assert bad.state == "exited" and bad.exit_code == 128 and bad.reason == "StartError"
    assert "no/such/binary" in bad.message


def test_cleanup_command_removes_what_a_killed_runtime_left(rt: SandboxRuntime) -> None:
    pod = _pod("Guaranteed")
    rt.run_pod_sandbox(pod)
    info = rt.start_container(pod, ContainerConfig("s", IMAGE, args=["sleep", "600"]))
    assert f"/kubepods/pod{pod.uid}/{info.id}" in Path(f"/proc/{info.pid}/cgroup").read_text()
    r = subprocess.run([sys.executable, "-m", "demo.sandbox.node", "cleanup", "--state-dir",
                        str(rt.state_dir)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    _wait(lambda: not Path(f"/proc/{info.pid}").exists(), what="container process to die")
    assert _leftovers(pod.uid, rt.state_dir) == []


def test_adopts_running_container_after_runtime_restart(rt: SandboxRuntime) -> None:
    pod = _pod("BestEffort")
    rt.run_pod_sandbox(pod)
    info = rt.start_container(pod, ContainerConfig("s", IMAGE, args=["sleep", "600"]))
    again = SandboxRuntime(rt.state_dir, NODE_IP, bin_dir=rt.bin_dir)  # a fresh process's view
    seen = {i.id: i for i in again.list_containers()}
    assert seen[info.id].state == "running" and seen[info.id].pid == info.pid
    os.kill(info.pid, signal.SIGKILL)
    gone = _wait(lambda: (i := again.container_status(pod.uid, info.id)) and i.state == "exited"
                 and i, what="exit seen by the adopting runtime")
    assert gone.exit_code == 137  # the shim outlived the old runtime and recorded it


def test_memory_limit_oom_kill_is_reported(rt: SandboxRuntime) -> None:
    pod = _pod()
    rt.run_pod_sandbox(pod)
    hog = ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"]
    info = rt.start_container(pod, ContainerConfig("hog", IMAGE, args=hog,
                                                   limits=cgroups.Limits(memory_bytes=16 << 20)))
    done = _wait(lambda: (i := rt.container_status(pod.uid, info.id)) and i.state == "exited"
                 and i, timeout=30, what="the memory hog to be killed")
    assert done.exit_code == 137 and done.reason == "OOMKilled"
