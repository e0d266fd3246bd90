"""Target resolution against real processes in cgroups and namespaces the test creates."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from test_agent_support import (
    faultsvc,
    find_child_pid,
    ns_command,
    pod_cgroup,
    start_in,
    stop_proc,
)

from bpf import cgroup as cg
from bpf import target as tg

# --- pure logic ----------------------------------------------------------------------------


def test_path_matches_both_kubelet_layouts() -> None:
    uid = "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"
    cid = "ab" * 32
    cgroupfs = f"/kubepods/burstable/pod{uid}/{cid}"
    guaranteed = f"/kubepods/pod{uid}/{cid}"
    u = uid.replace("-", "_")
    systemd = (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/"
               f"cri-containerd-{cid}.scope")
    systemd_g = f"/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{cid}.scope"
    for p in (cgroupfs, guaranteed, systemd, systemd_g):
        assert tg.path_matches(p, uid, cid), p
        assert tg.path_matches(p, uid, None), p
        assert tg.path_matches(p, None, "containerd://" + cid), p
        assert tg.path_matches(p, None, cid[:12]), p  # a short ID prefix
        assert not tg.path_matches(p, uid.replace("a", "b"), None), p
        assert not tg.path_matches(p, None, "cd" * 32), p
    # The pod cgroup itself (pause-less) is not a container.
    assert not tg.path_matches(f"/kubepods/burstable/pod{uid}", uid, cid)


def test_cpu_stat_and_quota_parsing() -> None:
    assert cg.parse_cpu_max("max 100000\n") == (-1, 100000)
    assert cg.parse_cpu_max("20000 50000") == (20000, 50000)
    kv = cg.parse_kv("nr_periods 21\nnr_throttled 20\nthrottled_time 2400000000\njunk\n")
    assert kv == {"nr_periods": 21, "nr_throttled": 20, "throttled_time": 2400000000}
    a = cg.CpuStat(10, 5, 1000, 100, 20000, 100000)
    b = cg.CpuStat(15, 9, 1600, 400, 20000, 100000)
    d = cg.stat_delta(a, b)
    got = (d["nr_periods"], d["nr_throttled"], d["throttled_ns"], d["usage_ns"])
    assert got == (5, 4, 600, 300)
    # A recreated cgroup restarts its counters: no negative deltas.
    assert cg.stat_delta(b, a)["nr_periods"] == 10


def test_cgroup_namespace_path_is_found_by_name(tmp_path: Path) -> None:
    leaf = tmp_path / "kubepods" / "burstable" / "podX" / ("c" * 64)
    leaf.mkdir(parents=True)
    m = cg.Mount(str(tmp_path), "/", "cgroup2", ())
    # As seen from inside a cgroup namespace: '..' entries, not placeable by joining.
    assert cg.resolve_dir(m, "/../../kubepods/burstable/podX/" + "c" * 64) == str(leaf)
    assert cg.resolve_dir(m, "/kubepods/burstable/podX/" + "c" * 64) == str(leaf)
    assert cg.resolve_dir(m, "/nope/" + "d" * 64) is None


# --- real processes ------------------------------------------------------------------------


def test_resolve_by_pod_uid_and_container_id_cgroupfs(root: None, go_bin: Path) -> None:
    with pod_cgroup("cgroupfs", quota_us=50000) as pc:
        p = start_in(pc, faultsvc(go_bin, "-mode", "healthy", "-load=false", "-addr",
                                  "127.0.0.1:0", "-pprof-addr", "127.0.0.1:0"))
        try:
            time.sleep(0.5)
            t = tg.resolve(pod_uid=pc.pod_uid, container_id="containerd://" + pc.container_id)
            assert t.pid == p.pid
            assert t.nspid == p.pid  # no PID namespace here
            assert t.cgroup_version == 1
            assert t.cgroups["container"] == str(pc.container("cpu"))
            assert t.cgroups["pod"] == str(pc.pod("cpu"))
            assert t.cgroups["container_cpuacct"] == str(pc.container("cpuacct"))
            assert t.container_id == pc.container_id and t.pod_uid == pc.pod_uid
            assert t.exe_in_container == os.path.realpath(go_bin / "faultsvc")
            assert t.netns == f"/proc/{p.pid}/ns/net"
            assert t.is_go is True and t.go_version and t.go_version.startswith("go1.")
            assert t.stripped is False
            tids = set(t.threads())
            assert p.pid in tids and len(tids) >= 2  # Go starts several threads
            assert tids == {int(x) for x in os.listdir(f"/proc/{p.pid}/task")}
            assert t.alive()
            # The same target by pid, checked against its pod: accepted.
            assert tg.resolve(pid=p.pid, pod_uid=pc.pod_uid).pid == p.pid
        finally:
            stop_proc(p)
        assert not t.alive()


def test_resolve_systemd_layout_by_pod_uid_only(root: None, go_bin: Path) -> None:
    with pod_cgroup("systemd") as pc:
        p = start_in(pc, [str(go_bin / "faultsvc-stripped"), "-mode", "healthy", "-load=false",
                          "-addr", "127.0.0.1:0", "-pprof-addr", "127.0.0.1:0"])
        try:
            time.sleep(0.5)
            t = tg.resolve(pod_uid=pc.pod_uid)
            assert t.pid == p.pid
            assert t.container_id == pc.container_id  # read back from cri-containerd-<id>.scope
            assert t.cgroups["container"].endswith(f"cri-containerd-{pc.container_id}.scope")
            assert t.cgroups["pod"].endswith(f"-pod{pc.pod_uid.replace('-', '_')}.slice")
            assert t.is_go is True and t.stripped is True
        finally:
            stop_proc(p)


def test_main_process_is_pid_1_of_its_namespace(root: None) -> None:
    with pod_cgroup() as pc:
        # unshare (host pid ns) forks sh as pid 1, which starts a child sleep and
        # then becomes `sleep 301`: three processes in the container cgroup.
        p = start_in(pc, ns_command(["sh", "-c", "sleep 300 & exec sleep 301"], pidns=True))
        try:
            main = find_child_pid(p.pid, "sleep")
            time.sleep(0.3)
            t = tg.resolve(pod_uid=pc.pod_uid, container_id=pc.container_id)
            assert t.pid == main
            assert t.nspid == 1 and len(t.nspids) == 2
            assert t.is_go is False
        finally:
            stop_proc(p)  # the cgroup's clean-up kills what is left in the namespace


def test_errors_say_what_was_not_found(root: None) -> None:
    with pytest.raises(tg.TargetError) as e:
        tg.resolve(pod_uid="00000000-0000-0000-0000-00000000dead")
    assert e.value.code == "not_found"
    assert "/proc/*/cgroup" in e.value.msg and "pod00000000-0000" in e.value.msg
    assert "pod00000000_0000" in e.value.msg  # the systemd spelling was looked for too
    assert e.value.hint
    with pytest.raises(tg.TargetError) as e:
        tg.resolve(pid=2**22 + 12345)
    assert e.value.code == "no_such_pid"
    with pytest.raises(tg.TargetError) as e:
        tg.resolve()
    assert e.value.code == "no_target"


def test_pid_outside_the_container_is_refused(root: None) -> None:
    with pod_cgroup() as pc:
        p = start_in(pc, ["sleep", "30"])
        try:
            time.sleep(0.2)
            with pytest.raises(tg.TargetError) as e:
                tg.resolve(pid=os.getpid(), pod_uid=pc.pod_uid, container_id=pc.container_id)
            assert e.value.code == "pid_outside_target"
            assert str(os.getpid()) in e.value.msg
            assert tg.resolve(pid=p.pid, container_id=pc.container_id).pid == p.pid
        finally:
            stop_proc(p)


def test_two_containers_are_ambiguous_without_an_id(root: None) -> None:
    with pod_cgroup() as a, pod_cgroup() as b:
        # Put b's container cgroup under a's pod: one pod, two containers.
        second = a.pod("cpu") / b.container_id
        second.mkdir()
        second_acct = a.pod("cpuacct") / b.container_id
        second_acct.mkdir()
        pa = start_in(a, ["sleep", "30"])

        def join_second() -> None:
            for d in (second, second_acct):
                (d / "cgroup.procs").write_text(str(os.getpid()))

        pb = subprocess.Popen(["sleep", "31"], preexec_fn=join_second)
        try:
            time.sleep(0.2)
            with pytest.raises(tg.TargetError) as e:
                tg.resolve(pod_uid=a.pod_uid)
            assert e.value.code == "ambiguous" and "2 containers" in e.value.msg
            assert tg.resolve(pod_uid=a.pod_uid, container_id=b.container_id).pid == pb.pid
        finally:
            stop_proc(pa)
            stop_proc(pb)
            for d in (second, second_acct):
                for _ in range(50):
                    try:
                        d.rmdir()
                        break
                    except OSError:
                        time.sleep(0.1)


def test_cgroup_v2_unified_hierarchy(root: None) -> None:
    with pod_cgroup(hierarchies=("unified",)) as pc:
        p = start_in(pc, ["sleep", "30"])
        try:
            time.sleep(0.2)
            v2 = [m for m in cg.cgroup_mounts() if m.fstype == "cgroup2"]
            assert v2, "no cgroup2 mount"
            dirs = cg.cpu_dirs_for_pid(p.pid, mounts=v2)
            assert dirs.version == 2 and dirs.cpu == str(pc.container("unified"))
            stat = cg.read_cpu_stat(2, dirs.cpu)
            ref = cg.parse_kv((pc.container("unified") / "cpu.stat").read_text())
            # A sleeping process: usage barely moves between the two reads.
            assert stat.usage_ns is not None and stat.usage_ns > 0
            assert abs(stat.usage_ns - ref["usage_usec"] * 1000) < 50_000_000
            # No cpu controller enabled on cgroup2 here: usage only, quota unknown.
            assert stat.quota_us is None and not stat.cpu_controller
        finally:
            stop_proc(p)


def test_resolve_from_inside_a_cgroup_namespace(root: None, bcc: str) -> None:
    """An agent in a private cgroup namespace (a DaemonSet pod on cgroup v2) sees the
    target's cgroup as ``/../...``; it still finds the host directories."""
    import json

    with pod_cgroup() as pc:
        target = start_in(pc, ["sleep", "30"])
        agent_cg = {h: pc.top[h] / "agent" for h in ("cpu", "cpuacct")}
        for d in agent_cg.values():
            d.mkdir()

        def join_agent_cg() -> None:
            for d in agent_cg.values():
                (d / "cgroup.procs").write_text(str(os.getpid()))

        code = ("import json,sys; from bpf.target import resolve; "
                f"t=resolve(pod_uid={pc.pod_uid!r}, container_id={pc.container_id!r}); "
                "print(json.dumps([open('/proc/%d/cgroup' % t.pid).read(), t.describe()]))")
        try:
            time.sleep(0.2)
            r = subprocess.run(["unshare", "--cgroup", bcc, "-c", code], preexec_fn=join_agent_cg,
                               cwd=str(Path(__file__).resolve().parent.parent),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr[-2000:]
            seen, t = json.loads(r.stdout)
            assert "/../" in seen, seen  # really relative to the namespace's root
            assert t["pid"] == target.pid
            assert t["cgroups"]["container"] == str(pc.container("cpu"))
            assert t["cgroups"]["pod"] == str(pc.pod("cpu"))
        finally:
            stop_proc(target)


def test_v2_cpu_stat_files(tmp_path: Path) -> None:
    # This host binds the cpu controller to v1, so v2's throttling fields are
    # checked on files written in the kernel's format (cgroup-v2.rst).
    (tmp_path / "cpu.stat").write_text(
        "usage_usec 5000\nuser_usec 4000\nsystem_usec 1000\nnr_periods 30\nnr_throttled 12\n"
        "throttled_usec 700\nnr_bursts 0\nburst_usec 0\n")
    (tmp_path / "cpu.max").write_text("20000 100000\n")
    (tmp_path / "cpu.pressure").write_text(
        "some avg10=12.50 avg60=3.00 avg300=1.00 total=123456\n"
        "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    s = cg.read_cpu_stat(2, str(tmp_path))
    got = (s.nr_periods, s.nr_throttled, s.throttled_ns, s.usage_ns)
    assert got == (30, 12, 700_000, 5_000_000)
    assert (s.quota_us, s.period_us) == (20000, 100000)
    assert cg.read_cpu_pressure(str(tmp_path)) == (12.5, 123_456_000)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cg.read_cpu_stat(2, str(tmp_path)).quota_us == -1
