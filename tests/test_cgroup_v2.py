"""cgroup v2, for real: kubelet-style cgroups the test creates under this hybrid
host's cgroup2 mount (/sys/fs/cgroup/unified, no controllers delegated: the cpu
controller is bound to v1), a real Go process moved into them, target
resolution and the throttle collector on them. Every cgroup is removed after.

References: the kernel's own files (/proc/PID/cgroup, cpu.stat) read directly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import need
from ebpf_support import goprogs
from test_agent_support import UNIFIED, pod_cgroup, start_in, stop_proc

from bpf import cgroup as cg
from bpf import target as tg
from bpf.collectors.throttle import ThrottleCollector


@pytest.fixture(scope="module")
def goprog(go_tool: str) -> Path:
    return goprogs.build(go_tool, "stripped")


@pytest.fixture()
def unified(root: None) -> Path:
    need(any(m.fstype == "cgroup2" for m in cg.cgroup_mounts()), "needs a cgroup2 mount")
    return UNIFIED if UNIFIED.is_dir() else Path(cg.CGROUP_ROOT)


def _proc_cgroup(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        hier, ctrls, path = line.split(":", 2)
        out["unified" if hier == "0" else ctrls] = path
    return out


def test_go_process_in_a_v2_only_systemd_layout_is_resolved(unified, goprog) -> None:
    """kubepods.slice/.../cri-containerd-<id>.scope made under the cgroup2 mount;
    a Go process moved there (its v1 cpu cgroup stays the root): found by pod
    UID, by container ID and by pid, as cgroup v2, at the scope's directory;
    another pid is refused."""
    with pod_cgroup("systemd", hierarchies=("unified",)) as pc:
        scope = pc.container("unified")
        assert str(scope).startswith(str(unified)) and scope.name.endswith(".scope")
        p = start_in(pc, [str(goprog), "-mode", "idle"])
        try:
            time.sleep(0.5)
            seen = _proc_cgroup(p.pid)
            assert seen["unified"].endswith(f"cri-containerd-{pc.container_id}.scope"), seen
            assert seen.get("cpu", "/") == "/", seen  # not placed in any v1 cpu cgroup
            for t in (tg.resolve(pod_uid=pc.pod_uid),
                      tg.resolve(container_id="containerd://" + pc.container_id),
                      tg.resolve(pid=p.pid)):
                assert t.pid == p.pid
                assert t.cgroup_version == 2, t.describe()
                assert t.cgroups["container"] == str(scope)
                assert t.cgroups["pod"] == str(pc.pod("unified"))
                assert t.pod_uid == pc.pod_uid
                assert t.is_go is True and t.stripped is True
            assert tg.resolve(pod_uid=pc.pod_uid).container_id == pc.container_id
            with pytest.raises(tg.TargetError) as e:
                tg.resolve(pid=os.getpid(), pod_uid=pc.pod_uid)
            assert e.value.code == "pid_outside_target" and str(os.getpid()) in e.value.msg
            assert tg.resolve(pid=p.pid, pod_uid=pc.pod_uid,
                              container_id=pc.container_id).pid == p.pid
        finally:
            stop_proc(p)
    assert not scope.exists()


def test_throttle_on_v2_without_cpu_controller_says_not_measured(unified, goprog) -> None:
    """A busy Go process in a cgroup2 directory whose cpu controller is not
    enabled: cpu.stat has usage only. The collector reports that usage (equal
    to the kernel's file) and says throttling is not measured: no periods, no
    quota, a note and one warning log frame, never 0 % as if measured."""
    with pod_cgroup("cgroupfs", hierarchies=("unified",)) as pc:
        d = pc.container("unified")
        avail = (d.parent / "cgroup.controllers").read_text().split()
        need("cpu" not in avail, "the cpu controller is enabled on cgroup2 here: the "
             "not-measured case cannot be made")
        p = start_in(pc, [str(goprog), "-mode", "cpu"])
        try:
            time.sleep(0.3)
            t = tg.resolve(pod_uid=pc.pod_uid, container_id=pc.container_id)
            assert t.cgroup_version == 2
            col = ThrottleCollector(t)

            def usage_ns() -> int:
                return cg.parse_kv((d / "cpu.stat").read_text())["usage_usec"] * 1000

            # The kernel's file read just before and just after each of the
            # collector's reads brackets what the collector must report.
            k0 = cg.parse_kv((d / "cpu.stat").read_text())
            before_start = usage_ns()
            col.start()
            after_start = usage_ns()
            time.sleep(1.0)
            before_poll = usage_ns()
            frames = col.poll()
            after_poll = usage_ns()
            time.sleep(0.5)
            again = col.poll()
            col.stop()
        finally:
            stop_proc(p)
    assert "nr_periods" not in k0 and "usage_usec" in k0  # what the kernel wrote
    logs = [f for f in frames if f["kind"] == "log"]
    (thr,) = [f for f in frames if f["kind"] == "throttle"]
    assert len(logs) == 1 and logs[0]["level"] == "warn"
    assert "cpu controller not enabled on this cgroup v2 node" in logs[0]["msg"]
    assert not [f for f in again if f["kind"] == "log"], "the warning is said once"
    assert thr["cgroup_version"] == 2
    for role in ("container", "pod"):
        c = thr[role]
        assert c["nr_periods"] is None and c["nr_throttled"] is None
        assert c["throttled_ns"] is None and c["quota_us"] is None
        assert c["throttling"] == "not_measured" and "cpu controller not enabled" in c["note"]
    # Usage is measured: a busy goroutine (up to one CPU on this shared
    # machine), within the kernel's own readings around the collector's.
    usage = thr["container"]["usage_ns"]
    assert usage > 0, thr
    assert before_poll - after_start <= usage <= after_poll - before_start, (
        usage, before_start, after_start, before_poll, after_poll)


def test_hybrid_process_in_v1_cpu_and_v2_keeps_v1_throttling(unified, goprog) -> None:
    """The same process in a v1 cpu cgroup with a quota and in cgroup2 (the
    layout a hybrid node's runtime makes): v1 holds the controller, so
    throttling is read there and measured; the cgroup2 twin gives pressure."""
    with pod_cgroup("cgroupfs", hierarchies=("cpu", "cpuacct", "unified"),
                    quota_us=1000) as pc:
        p = start_in(pc, [str(goprog), "-mode", "cpu"])
        stat = pc.container("cpu") / "cpu.stat"
        try:
            time.sleep(0.3)
            t = tg.resolve(pod_uid=pc.pod_uid, container_id=pc.container_id)
            assert t.cgroup_version == 1
            assert t.cgroups["container"] == str(pc.container("cpu"))
            assert t.cgroups["container_unified"] == str(pc.container("unified"))
            col = ThrottleCollector(t)

            def throttled() -> int:
                return cg.parse_kv(stat.read_text())["nr_throttled"]

            before_start = throttled()
            col.start()
            after_start = throttled()
            time.sleep(1.5)
            before_poll = throttled()
            frames = col.poll()
            after_poll = throttled()
            col.stop()
        finally:
            stop_proc(p)
    (thr,) = [f for f in frames if f["kind"] == "throttle"]
    assert not [f for f in frames if f["kind"] == "log"]
    c = thr["container"]
    assert "throttling" not in c and c["quota_us"] == 1000
    # 1 ms per 100 ms for a busy loop: throttled (how often depends on how
    # much CPU this shared machine gives it), within the kernel's own counts
    # read just before and after the collector's reads.
    assert before_poll - after_start >= 1
    assert before_poll - after_start <= c["nr_throttled"] <= after_poll - before_start, c
    assert c["nr_periods"] >= c["nr_throttled"] and c["throttled_ns"] > 0, c
    assert "pressure_some_ns" in c  # PSI from the cgroup2 twin
