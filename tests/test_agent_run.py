"""The agent end to end: ``/usr/bin/python3 -m bpf.agent`` against real processes in
cgroups and network namespaces made by the test, checked against references read
independently (the cgroup files, the app's own pprof through nsenter)."""

from __future__ import annotations

import base64
import gzip
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_agent_support import (
    agent,
    faultsvc,
    ns_command,
    nsenter_get,
    pod_cgroup,
    start_in,
    stop_proc,
    wait_port,
)

from bpf import cgroup as cg
from bpf.collectors.profiles import count_samples

pytestmark = pytest.mark.slow

PPROF = 6060


def _app(go_bin: Path, mode: str = "healthy", *extra: str) -> list[str]:
    # pprof bound to 127.0.0.1 inside the pod's own network namespace: reachable
    # only from inside it.
    return ns_command(faultsvc(go_bin, "-mode", mode, "-addr", "127.0.0.1:8080",
                               "-pprof-addr", f"127.0.0.1:{PPROF}", *extra), netns=True)


def _no_traceback(a) -> None:
    err = a.read_stderr()
    assert "Traceback" not in err, err[-3000:]
    assert not a.bad_lines, a.bad_lines[:3]


def test_throttle_frames_match_the_cgroup_files(bcc: str, go_bin: Path) -> None:
    with pod_cgroup(quota_us=5000, pod_quota_us=50000,
                    hierarchies=("cpu", "cpuacct", "unified")) as pc:
        app = start_in(pc, _app(go_bin, "cpu"))
        try:
            wait_port(app.pid, PPROF)
            with agent(bcc, "--pod-uid", pc.pod_uid, "--container-id", pc.container_id,
                       "--interval", "1") as a:
                hello = a.next("hello")
                assert hello["target"]["pid"] == app.pid
                assert hello["profiles"]["available"] is True
                assert hello["target"]["cgroups"]["container"] == str(pc.container())
                a.next("throttle")
                # Reference: the files, read right after each frame arrives.
                def read():
                    return cg.parse_kv((pc.container() / "cpu.stat").read_text())

                def psi():
                    line = (pc.container("unified") / "cpu.pressure").read_text().split("\n")[0]
                    return int(line.rsplit("total=", 1)[1]) * 1000

                ref0, psi0 = read(), psi()
                frames = [a.next("throttle") for _ in range(4)]
                ref1, psi1 = read(), psi()
                _no_traceback(a)
            c = [f["container"] for f in frames]
            periods = sum(x["nr_periods"] for x in c)
            throttled = sum(x["nr_throttled"] for x in c)
            tns = sum(x["throttled_ns"] for x in c)
            # Deltas match the files within one interval (10 periods of 100 ms).
            assert abs(periods - (ref1["nr_periods"] - ref0["nr_periods"])) <= 10
            assert abs(throttled - (ref1["nr_throttled"] - ref0["nr_throttled"])) <= 10
            one_interval_ns = max(x["throttled_ns"] for x in c)
            assert abs(tns - (ref1["throttled_time"] - ref0["throttled_time"])) <= one_interval_ns
            # A busy Go app under a 0.05-CPU quota is throttled (even on a loaded machine).
            assert throttled >= 4, c
            assert all(x["quota_us"] == 5000 and x["period_us"] == 100000 for x in c)
            assert all(f["pod"]["quota_us"] == 50000 for f in frames)
            assert all(f["threads"] >= 2 for f in frames)  # a Go process: several threads
            # CPU pressure from the unified twin, against the file read independently.
            assert hello["target"]["cgroups"]["container_unified"] == str(pc.container("unified"))
            stall = sum(x["pressure_some_ns"] for x in c)
            one = max(x["pressure_some_ns"] for x in c)
            assert abs(stall - (psi1 - psi0)) <= one, (stall, psi1 - psi0)
            assert all(0 <= x["pressure_some_avg10"] <= 100 for x in c)
            # Usage is capped by the quota: at most about 0.05 CPU-s per second.
            for f in frames:
                per_s = f["container"]["usage_ns"] / f["interval_ns"]
                assert 0 < per_s < 0.09, f
        finally:
            stop_proc(app)


def test_goroutine_count_matches_the_apps_own_count_in_its_netns(bcc: str, go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, _app(go_bin, "healthy", "-load=false"))
        try:
            wait_port(app.pid, PPROF)
            # From the node's own namespace the app's pprof is not there.
            with pytest.raises(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", PPROF), timeout=1) as s:
                    s.sendall(b"GET /debug/pprof/ HTTP/1.0\r\n\r\n")
                    if b"goroutine" not in s.recv(65536):
                        raise OSError("something else listens on the node's 127.0.0.1:6060")
            with agent(bcc, "--pod-uid", pc.pod_uid, "--interval", "0.5") as a:
                a.next("collector", name="goroutines", state="on")
                pairs = []
                for _ in range(4):
                    f = a.next("goroutines")
                    text = nsenter_get(app.pid, PPROF, "/debug/pprof/goroutine?debug=1").decode()
                    m = re.match(r"goroutine profile: total (\d+)", text)
                    assert m, text[:200]
                    pairs.append((f["count"], int(m.group(1))))
                assert f["source"] == "pprof_index"
                _no_traceback(a)
            assert all(abs(ours - ref) <= 1 for ours, ref in pairs), pairs
            assert all(ours >= 3 for ours, _ in pairs), pairs
        finally:
            stop_proc(app)


def test_profiles_through_the_netns(bcc: str, go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, _app(go_bin, "healthy", "-no-contention-profiles"))
        try:
            wait_port(app.pid, PPROF)
            with agent(bcc, "--pod-uid", pc.pod_uid, "--container-id", pc.container_id) as a:
                a.next("hello")
                a.send("profile", id="g1", profile="goroutine", seconds=0)
                g = a.next("profile", id="g1")
                data = base64.b64decode(g["data"])
                assert g["size"] == len(data) and data[:2] == b"\x1f\x8b"
                assert not g["empty"] and count_samples(data)[0] >= 1
                # The reference: the same profile fetched with nsenter has the same shape.
                ref = nsenter_get(app.pid, PPROF, "/debug/pprof/goroutine")
                assert gzip.decompress(ref)[:2] == gzip.decompress(data)[:2]

                a.send("profile", id="m1", profile="mutex", seconds=0)
                m = a.next("profile", id="m1")
                assert m["empty"] is True
                assert "SetMutexProfileFraction(5)" in m["note"]
                a.send("profile", id="b1", profile="block", seconds=0)
                b = a.next("profile", id="b1")
                assert b["empty"] is True and "SetBlockProfileRate" in b["note"]

                # A CPU profile while another one runs: the app says 500; we say why.
                busy = threading.Thread(
                    target=nsenter_get, args=(app.pid, PPROF, "/debug/pprof/profile?seconds=8"),
                    daemon=True)
                busy.start()
                # On a loaded machine the other profile may start after ours: ask again
                # until ours collides with it (each of ours lasts 1 s).
                e: dict = {}
                for i in range(6):
                    time.sleep(0.5)
                    a.send("profile", id=f"c1-{i}", profile="cpu", seconds=1)
                    e = a.next(None, timeout=30, id=f"c1-{i}")
                    if e["kind"] == "error":
                        break
                assert e["kind"] == "error", "never collided with the other CPU profile"
                assert e["code"] == "cpu_profile_busy" and "another CPU profile" in e["msg"]
                busy.join(timeout=20)
                a.send("profile", id="c2", profile="cpu", seconds=1)
                c = a.next("profile", id="c2", timeout=30)
                assert c["seconds"] == 1 and c["size"] > 0
                total, nonzero = count_samples(base64.b64decode(c["data"]))
                assert c["samples"] == total and c["empty"] == (nonzero == 0)
                a.send("profile", id="x", profile="nonsense", seconds=0)
                assert a.next("error", id="x")["code"] == "bad_profile"
                # Leaving while a profile is in flight: a clean bye, no late frame.
                a.send("profile", id="late", profile="cpu", seconds=5)
                time.sleep(0.5)
                a.close_stdin()
                assert a.next("bye")["reason"] == "stdin closed"
                assert a.wait() == 0
                assert a.all[-1]["kind"] == "bye"
                _no_traceback(a)
        finally:
            stop_proc(app)


def test_mutex_profile_with_contention_enabled_is_not_empty(bcc: str, go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, _app(go_bin, "mutex"))
        try:
            wait_port(app.pid, PPROF)
            time.sleep(2)
            with agent(bcc, "--pod-uid", pc.pod_uid) as a:
                a.send("profile", id="m", profile="mutex", seconds=0)
                m = a.next("profile", id="m")
                assert m["empty"] is False and m["note"] == ""
        finally:
            stop_proc(app)


def test_no_pprof_gives_one_clear_error_and_the_agent_keeps_running(bcc: str,
                                                                    go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, _app(go_bin, "healthy", "-load=false"))
        try:
            wait_port(app.pid, PPROF)
            with agent(bcc, "--pod-uid", pc.pod_uid, "--pprof-port", "6999") as a:
                e = a.next("error", code="no_pprof")
                assert e["hint"] == "serve net/http/pprof on :6060 or pass --pprof-port"
                assert e["fatal"] is False
                a.next("collector", name="goroutines", state="failed")
                a.next("throttle")
                a.next("throttle")  # still running
                assert sum(1 for f in a.all if f["kind"] == "error") == 1
                _no_traceback(a)
        finally:
            stop_proc(app)


def test_non_go_process_gets_a_clear_frame_and_throttling(bcc: str) -> None:
    with pod_cgroup() as pc:
        p = start_in(pc, ["sleep", "60"])
        try:
            time.sleep(0.2)
            with agent(bcc, "--pod-uid", pc.pod_uid, "--interval", "0.5") as a:
                hello = a.next("hello")
                assert hello["target"]["is_go"] is False
                assert hello["profiles"]["available"] is False
                e = a.next("error", code="not_go")
                assert "not a Go program" in e["msg"] and e["fatal"] is False
                col = {c["name"]: c for c in hello["collectors"]}
                assert col["goroutines"]["available"] is False
                assert col["throttle"]["available"] is True
                t = a.next("throttle")
                assert t["container"]["quota_us"] == -1
                a.send("profile", id="p", profile="heap", seconds=0)
                assert a.next("error", id="p")["code"] == "no_profiles"
                _no_traceback(a)
        finally:
            stop_proc(p)


def test_target_exit_mid_run(bcc: str, go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, faultsvc(go_bin, "-mode", "healthy", "-load=false", "-addr",
                                    "127.0.0.1:0", "-pprof-addr", "127.0.0.1:0"))
        try:
            time.sleep(0.5)
            with agent(bcc, "--pid", str(app.pid), "--interval", "0.5") as a:
                a.next("throttle")
                app.send_signal(signal.SIGKILL)  # unreaped: a zombie until we wait
                te = a.next("target_exit", timeout=10)
                assert te["pid"] == app.pid and te.get("signal") == 9, te
                bye = a.next("bye")
                assert bye["reason"] == "target exited"
                assert a.wait() == 0
                assert a.all[-1]["kind"] == "bye"
                _no_traceback(a)
        finally:
            stop_proc(app)


def test_stdin_close_sigterm_and_commands(bcc: str) -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        with agent(bcc, "--pid", str(p.pid), "--interval", "0.3") as a:
            a.next("hello")
            a.send("ping", id="42")
            assert a.next("log", pong="42")["msg"] == "pong"
            a.send("set", interval_ms=200, hz=500)
            log = a.next("log", level="info", timeout=5)
            assert log["interval_ns"] == 200_000_000 and log["hz"] == 99
            a.send("disable", collector="throttle")
            a.next("collector", name="throttle", state="off")
            a.send("enable", collector="throttle")
            a.next("collector", name="throttle", state="on")
            a.send("enable", collector="nope")
            assert a.next("error", code="bad_command")
            assert a.proc.stdin is not None
            a.proc.stdin.write(b"this is not json\n")
            a.proc.stdin.flush()
            assert "bad command line" in a.next("error", code="bad_command")["msg"]
            a.close_stdin()
            assert a.next("bye")["reason"] == "stdin closed"
            assert a.wait() == 0
            _no_traceback(a)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with agent(bcc, "--pid", str(p.pid)) as a:
                a.next("collector", name="throttle", state="on")
                a.proc.send_signal(sig)
                assert a.next("bye")["reason"] == f"signal {sig.name}"
                assert a.wait() == 0
                _no_traceback(a)
    finally:
        stop_proc(p)


def test_unknown_pod_is_a_fatal_frame_not_a_traceback(bcc: str) -> None:
    with agent(bcc, "--pod-uid", "00000000-0000-0000-0000-00000000beef") as a:
        assert a.next()["kind"] == "hello"  # always first
        e = a.next("error")
        assert e["code"] == "not_found" and e["fatal"] is True and "/proc/*/cgroup" in e["msg"]
        assert a.next("bye")["detached"] == 0
        assert a.wait() == 2
        _no_traceback(a)


def test_stdout_carries_only_frames(bcc: str) -> None:
    # Whatever the agent's libraries print goes to stderr: every stdout line is a frame.
    with agent(bcc, "--pid", str(os.getpid()), "--interval", "0.2") as a:
        a.next("throttle")
        a.close_stdin()
        a.wait()
    assert not a.bad_lines and a.all[0]["kind"] == "hello" and a.all[-1]["kind"] == "bye"


@pytest.mark.ebpf
def test_ebpf_collectors_are_detached_when_the_container_restarts(bcc: str, go_bin: Path) -> None:
    from bpf import bcc_env

    with pod_cgroup() as pc:
        app = start_in(pc, _app(go_bin, "cpu"))
        try:
            wait_port(app.pid, PPROF)
            before = set(bcc_env.bpf_programs())
            with agent(bcc, "--pod-uid", pc.pod_uid, "--container-id", pc.container_id,
                       "--interval", "0.5", ebpf=True) as a:
                a.next("collector", name="cpu_stacks", state="on", timeout=60)
                # bcc compiles in the background: cheap frames flowed meanwhile.
                i_on = next(i for i, f in enumerate(a.all) if f["kind"] == "collector"
                            and f["name"] == "cpu_stacks" and f["state"] == "on")
                assert any(f["kind"] == "throttle" for f in a.all[:i_on])
                f = a.next("cpu_stacks", timeout=10)
                f = a.next("cpu_stacks", timeout=10)
                assert f["samples"] > 0
                # The programs this agent holds (other agents may run on the machine).
                ours = set(bcc_env.process_bpf_fds(a.proc.pid)["prog_ids"])
                loaded = bcc_env.bpf_programs()
                assert ours and ours <= set(loaded) - before
                assert any(loaded[i].startswith("gkd_") for i in ours), loaded
                # The container "restarts": its process dies and a new one starts.
                stop_proc(app)
                app = start_in(pc, _app(go_bin, "cpu"))
                te = a.next("target_exit", timeout=10)
                assert "exited" in te["reason"] or "killed" in te["reason"]
                bye = a.next("bye", timeout=15)
                assert bye["detached"] >= 1
                assert a.wait() == 0
                _no_traceback(a)
            # The kernel frees a program shortly after its last fd closes (deferred work).
            deadline = time.monotonic() + 10
            while ours & set(bcc_env.bpf_programs()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not ours & set(bcc_env.bpf_programs()), "a probe was left attached"
        finally:
            stop_proc(app)


@pytest.mark.ebpf
def test_hidden_ebpf_flag_prints_the_generated_c(bcc: str) -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        r = subprocess.run([bcc, "-m", "bpf.agent", "--ebpf", "--pid", str(p.pid)],
                           cwd=str(Path(__file__).resolve().parent.parent),
                           capture_output=True, text=True, timeout=60)
    finally:
        p.kill()
        p.wait()
    assert r.returncode == 0, r.stderr
    assert "---- cpu_stacks" in r.stdout and f"#define TARGET_TGID {p.pid}" in r.stdout
    assert "get_stackid" in r.stdout


def test_without_bcc_the_ebpf_collectors_are_unavailable_not_fatal(root: None) -> None:
    import sys

    r = subprocess.run([sys.executable, "-c", "import bcc"], capture_output=True)
    if r.returncode == 0:
        pytest.skip("this interpreter imports bcc")
    p = subprocess.Popen(["sleep", "60"])
    try:
        # The venv's python has no bcc: exactly a node without python3-bpfcc.
        with agent(sys.executable, "--pid", str(p.pid), "--interval", "0.3", ebpf=True) as a:
            hello = a.next("hello")
            col = {c["name"]: c for c in hello["collectors"]}
            for name in ("cpu_stacks", "futex"):
                assert col[name]["available"] is False, col[name]
                assert "python3-bpfcc" in col[name]["reason"]
            assert col["throttle"]["available"] is True
            a.next("throttle")
            a.send("enable", collector="futex")
            off = a.next("collector", name="futex")
            assert off["state"] == "off" and "unavailable" in off["reason"]
            a.close_stdin()
            assert a.wait() == 0
            _no_traceback(a)
    finally:
        stop_proc(p)


def test_pprof_on_another_port_is_found(bcc: str, go_bin: Path) -> None:
    with pod_cgroup() as pc:
        app = start_in(pc, ns_command(faultsvc(
            go_bin, "-mode", "healthy", "-load=false", "-addr", "127.0.0.1:8080",
            "-pprof-addr", "127.0.0.1:7071"), netns=True))
        try:
            wait_port(app.pid, 7071)
            with agent(bcc, "--pod-uid", pc.pod_uid) as a:
                hello = a.next("hello")
                assert hello["pprof_port"] == 7071
                assert a.next("log", pprof_port=7071)["msg"].startswith("the app serves pprof")
                assert a.next("goroutines")["count"] > 0
                _no_traceback(a)
        finally:
            stop_proc(app)


def test_not_root_is_a_clear_fatal_frame(bcc: str) -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bcc,
                     "-m", "bpf.agent"]
        with agent(bcc, "--pid", str(p.pid), argv0=as_nobody) as a:
            a.next("hello")
            e = a.next("error")
            assert e["code"] == "permission" and e["fatal"] is True and "root" in e["hint"]
            assert a.wait() == 2
            _no_traceback(a)
    finally:
        stop_proc(p)


def test_a_pprof_too_slow_at_start_is_tried_again(bcc: str, go_bin: Path) -> None:
    """A busy app whose pprof misses the first deadline still gets its goroutine count."""
    import socket

    index = (b"<html><table><tr><td>7</td><td><a href='goroutine?debug=1'>goroutine</a>"
             b"</td></tr></table></html>")  # fmt: skip
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    served = {"slow": 0, "ok": 0}

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.recv(65536)
                if served["slow"] < 1:  # the first request misses the agent's 1 s deadline
                    served["slow"] += 1
                    time.sleep(2.5)
                    continue
                served["ok"] += 1
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                          + str(len(index)).encode() + b"\r\n\r\n" + index)  # fmt: skip

    threading.Thread(target=serve, daemon=True).start()
    app = subprocess.Popen(faultsvc(go_bin, "-addr", "127.0.0.1:0", "-pprof-addr", "127.0.0.1:0",
                                    "-load=false"))  # fmt: skip
    try:
        with agent(bcc, "--pid", str(app.pid), "--pprof-port", str(port)) as a:
            warn = a.next("log", timeout=30, level="warn")
            assert "goroutines could not start yet" in warn["msg"], warn
            a.next("collector", timeout=20, name="goroutines", state="on")
            assert a.next("goroutines", timeout=10)["count"] == 7
            assert not [f for f in a.all if f["kind"] == "error"], a.all
            _no_traceback(a)
    finally:
        stop_proc(app)
        srv.close()
    assert served["slow"] == 1 and served["ok"] >= 2
