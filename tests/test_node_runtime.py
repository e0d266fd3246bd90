"""Pure-logic tests of the sandbox node runtime: images, QoS, phase, conditions, limits, IPAM.

The real paths (processes, namespaces, cgroups, the API server) are tested in
test_node_runtime_process.py and test_node_runtime_sandbox.py.
"""

from __future__ import annotations

import shutil
import threading
import types
from pathlib import Path

import pytest

from demo.sandbox.node import cgroups, images, podstatus
from demo.sandbox.node.network import IPAM, netns_name, veth_name


def _fake_bin(tmp_path: Path, name: str) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(b"\x7fELF fake")
    p.chmod(0o755)
    return d


def test_sandbox_local_image_maps_to_build_bin(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, "faultsvc")
    img = images.resolve("sandbox.local/faultsvc:v1", bin_dir)
    assert img.host_path == (bin_dir / "faultsvc").resolve()
    assert img.container_path == "/usr/local/bin/faultsvc"
    assert img.image_id.startswith("sandbox.local/faultsvc@sha256:")
    assert len(img.image_id.rsplit(":", 1)[1]) == 64


def test_local_image_names_an_absolute_path(tmp_path: Path) -> None:
    bin_dir = _fake_bin(tmp_path, "svc")
    target = bin_dir / "svc"
    for name in (f"local/{target}", f"local/{str(target).lstrip('/')}"):
        img = images.resolve(name, tmp_path)
        assert img.host_path == target
        assert img.container_path == str(target)


@pytest.mark.parametrize(
    "name",
    ["docker.io/library/nginx:1.27", "sandbox.local/nope", "sandbox.local/../etc/passwd",
     "local//does/not/exist", "sandbox.local/"],
)
def test_unknown_image_fails_like_a_pull(tmp_path: Path, name: str) -> None:
    with pytest.raises(images.ImagePullError) as e:
        images.resolve(name, _fake_bin(tmp_path, "faultsvc"))
    assert "not found" in str(e.value)
    assert "failed to pull and unpack image" in str(e.value)


def test_busybox_image() -> None:
    if not shutil.which("busybox") and not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    img = images.resolve("sandbox.local/busybox:1.35")
    assert img.container_path == "/bin/busybox"


def _spec(*resources: dict) -> dict:
    return {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}


def test_qos_classes() -> None:
    assert podstatus.qos_class(_spec({})) == "BestEffort"
    assert podstatus.qos_class(_spec({"limits": {"cpu": "200m", "memory": "64Mi"}})) == "Guaranteed"
    g = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}
    assert podstatus.qos_class(_spec(g)) == "Guaranteed"
    assert podstatus.qos_class(_spec({"requests": {"cpu": "100m"}})) == "Burstable"
    assert podstatus.qos_class(_spec(g, {})) == "Burstable"


def test_limits_parse_quantities() -> None:
    lim = podstatus.container_limits({"resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}})
    assert lim == cgroups.Limits(cpu_millis=250, memory_bytes=64 << 20, cpu_request_millis=250)
    pod = podstatus.pod_limits(_spec({"limits": {"cpu": "250m"}}, {"limits": {"cpu": "1"}}))
    assert pod.cpu_millis == 1250 and pod.memory_bytes is None
    # One container without a CPU limit leaves the pod unlimited, as kubelet does.
    assert podstatus.pod_limits(_spec({"limits": {"cpu": "250m"}}, {})).cpu_millis is None


def test_cgroup_paths_follow_kubelet_cgroupfs_driver() -> None:
    assert cgroups.pod_relpath("u1", "Guaranteed") == "kubepods/podu1"
    assert cgroups.pod_relpath("u1", "Burstable") == "kubepods/burstable/podu1"
    assert cgroups.pod_relpath("u1", "BestEffort") == "kubepods/besteffort/podu1"


def test_v2_limits_written_as_cpu_max_and_memory_max(tmp_path: Path) -> None:
    # A directory standing in for a cgroup2 mount: only the file writing is under test.
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    cg = tmp_path / "kubepods" / "podX"
    cg.mkdir(parents=True)
    for f in ("cpu.max", "memory.max"):
        (cg / f).write_text("max\n")
    cgroups.apply_limits(cg, cgroups.Limits(cpu_millis=200, memory_bytes=1 << 27), tmp_path)
    assert (cg / "cpu.max").read_text() == "20000 100000"
    assert (cg / "memory.max").read_text() == str(1 << 27)


def _cs(name: str, state: dict, last: dict | None = None, ready: bool = False) -> dict:
    return {"name": name, "state": state, "lastState": last or {}, "ready": ready}


RUN = {"running": {"startedAt": "x"}}
WAIT = {"waiting": {"reason": "ContainerCreating"}}
CRASH = {"waiting": {"reason": "CrashLoopBackOff"}}
LAST = {"terminated": {"exitCode": 1}}


def _term(code: int) -> dict:
    return {"terminated": {"exitCode": code}}


def test_pod_phase_like_kubelet() -> None:
    assert podstatus.pod_phase("Always", [_cs("a", WAIT)]) == "Pending"
    assert podstatus.pod_phase("Always", [_cs("a", RUN), _cs("b", WAIT)]) == "Pending"
    assert podstatus.pod_phase("Always", [_cs("a", RUN)]) == "Running"
    assert podstatus.pod_phase("Always", [_cs("a", CRASH, LAST)]) == "Running"
    assert podstatus.pod_phase("Never", [_cs("a", _term(0))]) == "Succeeded"
    assert podstatus.pod_phase("Never", [_cs("a", _term(3))]) == "Failed"
    assert podstatus.pod_phase("OnFailure", [_cs("a", _term(0))]) == "Succeeded"
    assert podstatus.pod_phase("Never", [_cs("a", _term(0)), _cs("b", _term(2))]) == "Failed"


def test_restart_policy() -> None:
    assert podstatus.should_restart("Always", 0)
    assert podstatus.should_restart("OnFailure", 2) and not podstatus.should_restart("OnFailure", 0)
    assert not podstatus.should_restart("Never", 137)


def test_conditions_keep_transition_time_until_status_changes() -> None:
    first = podstatus.conditions("Pending", [_cs("a", WAIT)], True, [], "T1")
    ready = {c["type"]: c for c in first}["Ready"]
    assert ready["status"] == "False" and ready["message"] == "containers with unready status: [a]"
    again = podstatus.conditions("Pending", [_cs("a", WAIT)], True, first, "T2")
    assert {c["type"]: c for c in again}["Ready"]["lastTransitionTime"] == "T1"
    up = podstatus.conditions("Running", [_cs("a", RUN, ready=True)], True, again, "T3")
    by = {c["type"]: c for c in up}
    assert by["Ready"]["status"] == "True" and by["Ready"]["lastTransitionTime"] == "T3"
    assert by["PodScheduled"]["lastTransitionTime"] == "T1"
    assert set(by) == {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                       "PodScheduled"}


def test_env_from_values_and_field_refs() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"nodeName": "node-1"}}
    c = {"env": [{"name": "A", "value": "1"},
                 {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    assert podstatus.env_for(c, pod, "10.88.1.2", "10.88.1.1") == {
        "A": "1", "POD": "p", "IP": "10.88.1.2"}


def test_ipam_allocates_per_node_and_persists(tmp_path: Path) -> None:
    a = IPAM(tmp_path, "10.88.3.1")
    assert a.allocate("u1") == "10.88.3.2"
    assert a.allocate("u2") == "10.88.3.3"
    assert a.allocate("u1") == "10.88.3.2"
    a.release("u1")
    b = IPAM(tmp_path, "10.88.3.1")  # a restarted runtime reads the same table
    assert b.allocated() == {"u2": "10.88.3.3"}
    assert b.allocate("u3") == "10.88.3.2"


def test_interface_names_fit_the_kernel_limit() -> None:
    uid = "0123abcd-4567-89ef-0123-456789abcdef"
    assert len(veth_name(uid)) <= 15
    assert netns_name(uid).startswith("gkd-")


def test_watch_relists_after_410_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake watch that expires once: the node must re-list, then watch from the new version."""
    from kubernetes.client.rest import ApiException

    from demo.sandbox.node import kubelet

    # Only the watch loop's own state: no API client, no runtime.
    agent = kubelet.NodeAgent.__new__(kubelet.NodeAgent)
    agent.node_name = "n"
    agent.stopping = threading.Event()
    agent.core = types.SimpleNamespace(list_pod_for_all_namespaces=None)
    lists: list[int] = []
    watched_from: list[str] = []

    def fake_list() -> str:
        lists.append(1)
        return f"rv{len(lists)}"

    class FakeWatch:
        def stream(self, _func, **kw):
            watched_from.append(kw["resource_version"])
            if len(watched_from) == 1:
                raise ApiException(status=410, reason="Expired: too old resource version")
            agent.stopping.set()
            return iter(())

        def stop(self) -> None:
            pass

    monkeypatch.setattr(agent, "_list_pods", fake_list)
    monkeypatch.setattr(kubelet.watch, "Watch", FakeWatch)
    agent._watch_loop()
    assert lists == [1, 1] and watched_from == ["rv1", "rv2"]
