"""The node runtime end to end, through a real kube-apiserver (the shared 2-node sandbox).

Every pod here lives in its own namespace, so the demo pods are not touched.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from demo.sandbox.node import network

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

CGROUP = Path("/sys/fs/cgroup")


def _wait(fn: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except ApiException as e:
            last = e
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def core(sandbox) -> client.CoreV1Api:
    return client.CoreV1Api(sandbox.api_client())


@pytest.fixture(scope="module")
def ns(core: client.CoreV1Api):
    name = f"node-rt-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    for p in core.list_namespaced_pod(name).items:
        core.delete_namespaced_pod(p.metadata.name, name, grace_period_seconds=1)
    _wait(lambda: not core.list_namespaced_pod(name).items, 60, "test pods to go")
    core.delete_namespace(name)


def _pod(name: str, image: str, node: str = "node-1", command: list[str] | None = None,
         env: dict[str, str] | None = None, limits: dict[str, str] | None = None,
         restart: str = "Always") -> dict:
    c: dict[str, Any] = {"name": "main", "image": image, "ports": [{"containerPort": 6060}]}
    if command:
        c["command"] = command
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if limits:
        c["resources"] = {"limits": limits}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": 1,
                     "containers": [c]}}


HTTPD = ["/bin/busybox", "httpd", "-f", "-p", "6060", "-h", "/etc"]


def _create(core: client.CoreV1Api, ns: str, body: dict) -> None:
    core.create_namespaced_pod(ns, body)


def _running(core: client.CoreV1Api, ns: str, name: str, timeout: float = 30.0):
    def check():
        p = core.read_namespaced_pod(name, ns)
        cs = p.status.container_statuses or []
        return p if p.status.phase == "Running" and cs and cs[0].state.running else None
    return _wait(check, timeout, f"pod {name} Running")


def _container(p) -> tuple[str, int]:
    """(container id, host PID of its main process) from the pod status and its cgroup."""
    cid = p.status.container_statuses[0].container_id.removeprefix("containerd://")
    qos = p.status.qos_class
    rel = f"kubepods/pod{p.metadata.uid}" if qos == "Guaranteed" else \
        f"kubepods/{qos.lower()}/pod{p.metadata.uid}"
    procs = (CGROUP / "pids" / rel / cid / "cgroup.procs").read_text().split()
    return cid, int(procs[0])


def test_node_objects_are_ready_with_addresses(core: client.CoreV1Api) -> None:
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert {"node-1", "node-2"} <= set(nodes)
    for i, name in ((1, "node-1"), (2, "node-2")):
        n = nodes[name]
        ready = {c.type: c for c in n.status.conditions}["Ready"]
        assert ready.status == "True" and ready.reason == "KubeletReady"
        addrs = {a.type: a.address for a in n.status.addresses}
        assert addrs == {"InternalIP": f"10.88.{i}.1", "Hostname": name}
        info = n.status.node_info
        assert info.container_runtime_version == "gkd-sandbox://0.1"
        assert info.kubelet_version == "v1.34.4"
        assert info.kernel_version == os.uname().release
        assert int(n.status.capacity["cpu"]) >= 1


def test_pod_runs_with_pod_ip_and_kubelet_status(core, ns) -> None:
    _create(core, ns, _pod("web", "sandbox.local/busybox", command=HTTPD))
    p = _running(core, ns, "web")
    assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network("10.88.0.0/16")
    assert p.status.pod_ip.startswith("10.88.1.")
    assert [i.ip for i in p.status.pod_ips] == [p.status.pod_ip]
    assert p.status.host_ip == "10.88.1.1" and p.status.start_time is not None
    conds = {c.type: c.status for c in p.status.conditions}
    assert conds["Ready"] == conds["ContainersReady"] == conds["PodScheduled"] == "True"
    cs = p.status.container_statuses[0]
    assert cs.ready and cs.started and cs.restart_count == 0
    cid = cs.container_id.removeprefix("containerd://")
    assert len(cid) == 64 and int(cid, 16) >= 0
    assert cs.image_id.startswith("sandbox.local/busybox@sha256:")


def test_pprof_index_through_the_api_server_pod_proxy(core, ns) -> None:
    _create(core, ns, _pod("pprof", "sandbox.local/faultsvc", node="node-2",
                           env={"FAULT_MODE": "healthy"}))
    _running(core, ns, "pprof")

    def fetch():
        r = core.connect_get_namespaced_pod_proxy_with_path("pprof:6060", ns, "debug/pprof/",
                                                            _preload_content=False)
        return r.status == 200 and r.data.decode()

    body = _wait(fetch, 30, "pprof index through the pod proxy")
    assert "goroutine" in body and "/debug/pprof/" in body


def test_container_maps_show_in_container_binary_path(core, ns) -> None:
    _create(core, ns, _pod("maps", "sandbox.local/faultsvc", env={"FAULT_MODE": "healthy"}))
    p = _running(core, ns, "maps")
    _, pid = _container(p)
    maps = Path(f"/proc/{pid}/maps").read_text()
    # pivot_root (as runc does): the path inside the container, not the host's build/bin path.
    assert " /usr/local/bin/faultsvc\n" in maps
    assert "build/bin" not in maps and "/.cache/" not in maps
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert Path(f"/proc/{pid}/root/usr/local/bin/faultsvc").is_file()


def test_cpu_limited_pod_is_throttled(core, ns) -> None:
    # 50m: a quota small enough to be used up each period even on a busy 2-core machine.
    limits = {"cpu": "50m", "memory": "128Mi"}
    _create(core, ns, _pod("cpu", "sandbox.local/faultsvc", env={"FAULT_MODE": "cpu"},
                           limits=limits))
    p = _running(core, ns, "cpu")
    assert p.status.qos_class == "Guaranteed"
    cid, pid = _container(p)
    cg = CGROUP / "cpu" / "kubepods" / f"pod{p.metadata.uid}" / cid
    assert f":cpu:/kubepods/pod{p.metadata.uid}/{cid}\n" in Path(f"/proc/{pid}/cgroup").read_text()
    assert (cg / "cpu.cfs_quota_us").read_text().strip() == "5000"
    assert (cg.parent / "cpu.cfs_quota_us").read_text().strip() == "5000"
    mem = CGROUP / "memory" / "kubepods" / f"pod{p.metadata.uid}" / cid
    assert int((mem / "memory.limit_in_bytes").read_text()) == 128 << 20

    def throttled() -> int:
        stat = dict(line.split() for line in (cg / "cpu.stat").read_text().splitlines())
        return int(stat["nr_throttled"])

    first = throttled()
    try:
        # Rising at all is the claim; how fast depends on how busy the host is (cpu.shares
        # from a 50m request is small, as on a real node).
        _wait(lambda: throttled() > first, 60, "nr_throttled to rise")
    except AssertionError:
        logs = list(Path("/tmp").glob(f"**/pods/{p.metadata.uid}/containers/{cid}/log"))
        raise AssertionError(f"cpu.stat: {(cg / 'cpu.stat').read_text()!r} procs "
                             f"{(cg / 'cgroup.procs').read_text()!r} "
                             f"log: {logs and logs[0].read_text()[-2000:]!r}") from None


def test_killed_container_restarts_with_new_id(core, ns) -> None:
    _create(core, ns, _pod("crash", "sandbox.local/busybox", command=HTTPD))
    p = _running(core, ns, "crash")
    old_id, pid = _container(p)
    os.kill(pid, signal.SIGKILL)

    def restarted():
        q = core.read_namespaced_pod("crash", ns)
        cs = q.status.container_statuses[0]
        return q if cs.restart_count == 1 and cs.state.running else None

    q = _wait(restarted, 30, "restart after SIGKILL")
    cs = q.status.container_statuses[0]
    new_id = cs.container_id.removeprefix("containerd://")
    assert new_id != old_id and len(new_id) == 64
    last = cs.last_state.terminated
    assert last.exit_code == 137 and last.container_id == f"containerd://{old_id}"
    assert not Path(f"/proc/{pid}").exists()
    assert not (CGROUP / "pids" / "kubepods" / "besteffort" / f"pod{q.metadata.uid}" /
                old_id).exists()


def test_restart_policy_never_and_on_failure(core, ns) -> None:
    _create(core, ns, _pod("fails", "sandbox.local/busybox", restart="Never",
                           command=["/bin/busybox", "sh", "-c", "exit 3"]))
    _create(core, ns, _pod("succeeds", "sandbox.local/busybox", restart="OnFailure",
                           command=["/bin/busybox", "true"]))
    f = _wait(lambda: (p := core.read_namespaced_pod("fails", ns)).status.phase == "Failed" and p,
              30, "phase Failed")
    t = f.status.container_statuses[0].state.terminated
    assert t.exit_code == 3 and t.reason == "Error"
    assert f.status.container_statuses[0].restart_count == 0
    s = _wait(lambda: (p := core.read_namespaced_pod("succeeds", ns)).status.phase == "Succeeded"
              and p, 30, "phase Succeeded")
    assert s.status.container_statuses[0].state.terminated.reason == "Completed"


def test_unknown_image_waits_with_err_image_pull(core, ns) -> None:
    _create(core, ns, _pod("nope", "registry.example.invalid/nope:1"))
    reasons = set()

    def waiting():
        p = core.read_namespaced_pod("nope", ns)
        for cs in p.status.container_statuses or []:
            if cs.state.waiting:
                reasons.add(cs.state.waiting.reason)
                if cs.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff"):
                    return p, cs.state.waiting
        return None

    p, w = _wait(waiting, 30, "ErrImagePull")
    assert p.status.phase == "Pending"
    assert "registry.example.invalid/nope:1" in w.message
    # Each retry shows ErrImagePull only briefly before ImagePullBackOff: watch every
    # status write instead of polling, which can miss the short one.
    from kubernetes import watch

    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_pod, ns, field_selector="metadata.name=nope",
                       timeout_seconds=60):
        for cs in ev["object"].status.container_statuses or []:
            if cs.state.waiting:
                reasons.add(cs.state.waiting.reason)
        if {"ErrImagePull", "ImagePullBackOff"} <= reasons:
            w.stop()
            break
    assert {"ErrImagePull", "ImagePullBackOff"} <= reasons, reasons


def test_deleted_pod_leaves_nothing(core, ns, sandbox) -> None:
    _create(core, ns, _pod("gone", "sandbox.local/faultsvc", node="node-2",
                           env={"FAULT_MODE": "healthy"}, limits={"cpu": "200m"}))
    p = _running(core, ns, "gone")
    uid = p.metadata.uid
    cid, pid = _container(p)
    state = sandbox.lay.node_dir("node-2")
    assert network.netns_exists(uid) and network.link_exists(network.veth_name(uid))
    assert (state / "pods" / uid).is_dir()
    core.delete_namespaced_pod("gone", ns)

    def deleted():
        try:
            core.read_namespaced_pod("gone", ns)
            return False
        except ApiException as e:
            return e.status == 404

    _wait(deleted, 30, "the pod object to be finalized")
    assert not Path(f"/proc/{pid}").exists()
    assert not network.netns_exists(uid)
    assert not network.link_exists(network.veth_name(uid))
    assert list(CGROUP.glob(f"*/kubepods/**/pod{uid}")) == []
    mounts = Path("/proc/mounts").read_text()
    assert uid not in mounts and cid not in mounts
    assert not (state / "pods" / uid).exists()


def test_two_nodes_each_run_pods(core, ns) -> None:
    for node in ("node-1", "node-2"):
        _create(core, ns, _pod(f"on-{node}", "sandbox.local/busybox", node=node, command=HTTPD))
    for i, node in ((1, "node-1"), (2, "node-2")):
        p = _running(core, ns, f"on-{node}")
        assert p.status.pod_ip.startswith(f"10.88.{i}.") and p.status.host_ip == f"10.88.{i}.1"
        r = _wait(lambda n=node: core.connect_get_namespaced_pod_proxy_with_path(
            f"on-{n}:6060", ns, "hostname", _preload_content=False), 20, "proxy to busybox httpd")
        assert r.data.decode().strip() == f"on-{node}"


def test_restarted_node_runtime_adopts_running_containers(core, ns, sandbox) -> None:
    """Kill node-2's runtime outright, start it again: the container keeps its ID and PID."""
    start_node = getattr(sandbox, "_start_node", None)
    if start_node is None:
        pytest.fail("Sandbox has no way to restart a node runtime (_start_node)")
    _create(core, ns, _pod("adopt", "sandbox.local/busybox", node="node-2", command=HTTPD))
    p = _running(core, ns, "adopt")
    cid, pid = _container(p)
    from demo.sandbox import procs

    daemon = next(d for d in procs.load(sandbox.lay.pids) if d.name == "node-node-2")
    os.kill(daemon.pid, signal.SIGKILL)
    _wait(lambda: not daemon.alive(), 10, "the node runtime to die")
    assert Path(f"/proc/{pid}").exists(), "containers must survive their runtime's death"
    start_node("node-2", "10.88.2.1", time.monotonic() + 60)
    # A new pod proves the restarted runtime works; the old one must be unchanged.
    _create(core, ns, _pod("after", "sandbox.local/busybox", node="node-2", command=HTTPD))
    _running(core, ns, "after")
    q = core.read_namespaced_pod("adopt", ns)
    cs = q.status.container_statuses[0]
    assert cs.container_id == f"containerd://{cid}" and cs.restart_count == 0
    assert _container(q)[1] == pid



def test_pod_watch_sees_new_and_updated_pods(core, ns, sandbox) -> None:
    """The node's list+watch (the 410 re-list branch is unit-tested in test_node_runtime.py)."""
    import threading

    from demo.sandbox.node.kubelet import NodeAgent

    agent = NodeAgent(str(sandbox.admin_kubeconfig), "node-watch-test", "10.88.99.1",
                      runtime=None)  # type: ignore[arg-type]  # the watch never touches it
    t = threading.Thread(target=agent._watch_loop, daemon=True)
    t.start()
    try:
        _wait(agent.synced.is_set, 30, "the first list")
        _create(core, ns, _pod("watched", "sandbox.local/busybox", node="node-watch-test"))
        uid = core.read_namespaced_pod("watched", ns).metadata.uid
        _wait(lambda: uid in agent.pods, 30, "the new pod through the watch")
        core.patch_namespaced_pod("watched", ns, {"metadata": {"labels": {"seen": "yes"}}})
        _wait(lambda: agent.pods[uid]["metadata"].get("labels", {}).get("seen") == "yes", 30,
              "the update through the watch")
        core.delete_namespaced_pod("watched", ns, grace_period_seconds=0)
        _wait(lambda: uid not in agent.pods, 30, "the deletion through the watch")
    finally:
        agent.stopping.set()
