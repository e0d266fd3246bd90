"""End to end on the sandbox: the real agent, shipped over real SSH, on real Go pods.

The pod source uses the restricted kubeconfig (deploy/rbac.yaml's least
privilege); the SSH route is the sandbox's ssh_config with strict host keys.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections import Counter

import pytest

from bpf.schema import expand_stacks
from tui.session import AgentSession, KubeSessionFactory
from tui.sources.kube import KubePodSource
from tui.transports.local import LocalTransport
from tui.transports.proxy import PprofOnlyTransport
from tui.transports.ssh import SSHOptions

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.ebpf]


class Frames:
    """Collects a session's frames in a thread, as the App's worker would."""

    def __init__(self, session) -> None:
        self.session = session
        self.q: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for f in self.session.frames():
            self.q.put(f)
        self.q.put(None)

    def until(self, pred, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if f is None:
                break
            self.seen.append(f)
            if f["kind"] == "error" and f.get("fatal"):
                raise AssertionError(f"fatal error while waiting for {what}: {f}")
            if pred(f):
                return f
        logs = [(f["kind"], f.get("msg") or f.get("code") or (f.get("name"), f.get("state"),
                 f.get("reason"))) for f in self.seen
                if f["kind"] in ("log", "error", "collector")]  # fmt: skip
        raise AssertionError(f"no {what} within {timeout} s; log/error frames: {logs[-15:]}")

    def collect(self, kind: str, seconds: float) -> list[dict]:
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                f = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if f is None:
                break
            self.seen.append(f)
            if f["kind"] == kind:
                out.append(f)
        return out


@pytest.fixture(scope="module")
def cluster(sandbox):
    src = KubePodSource(str(sandbox.restricted_kubeconfig))
    ssh = SSHOptions(config=[str(sandbox.ssh_config)])
    factory = KubeSessionFactory(src, transport="ssh", ssh_options=ssh)
    yield {"sandbox": sandbox, "source": src, "factory": factory, "ssh": ssh}
    src.stop()


def attach(cluster, name: str):
    pod = cluster["source"].read_pod("demo", name)
    assert pod.status == "Running", f"demo/{name} is {pod.status}"
    t0 = time.monotonic()
    s = cluster["factory"].attach(pod)
    return s, Frames(s), t0


def test_leak_goroutines_rise_over_ssh(cluster):
    s, fr, t0 = attach(cluster, "leak")
    try:
        hello = fr.until(lambda f: f["kind"] == "hello", 60, "hello")
        assert hello["target"]["container_id"]
        first = fr.until(lambda f: f["kind"] == "goroutines", 30, "goroutines")
        first_live_s = time.monotonic() - t0
        later = fr.collect("goroutines", 8)
        assert later, "no goroutine frames after the first"
        assert later[-1]["count"] > first["count"], (first["count"], later[-1]["count"])
        h = s.health()
        assert h.state == "attached" and h.description.startswith("ssh node-")
        link = s._transport.last_timings
        print(f"\nleak: first goroutines frame {first_live_s:.2f} s after attach "
              f"(link {link}); {first['count']} -> {later[-1]['count']}")  # fmt: skip
    finally:
        s.close()
    # Warm: the bundle is cached on the node, so this measures connect + agent start.
    s, fr, t0 = attach(cluster, "leak")
    try:
        fr.until(lambda f: f["kind"] == "goroutines", 30, "goroutines (warm)")
        warm = time.monotonic() - t0
        print(f"leak warm attach: first goroutines frame {warm:.2f} s "
              f"(link {s._transport.last_timings})")  # fmt: skip
        assert s._transport.last_timings["cached"] == 1.0
    finally:
        s.close()


def test_cpu_pod_throttles(cluster):
    s, fr, _ = attach(cluster, "cpu")
    try:
        f = fr.until(
            lambda f: f["kind"] == "throttle" and f["container"]["nr_throttled"] > 0, 60,
            "a throttle frame with nr_throttled > 0",
        )  # fmt: skip
        assert f["container"]["quota_us"] > 0
    finally:
        s.close()


def test_mutex_hot_function_tops_cpu_stacks(cluster):
    s, fr, _ = attach(cluster, "mutex")
    try:
        fr.until(lambda f: f["kind"] == "cpu_stacks" and f["samples"] > 0, 90, "cpu samples")
        flat: Counter = Counter()
        cum: Counter = Counter()
        for f in fr.collect("cpu_stacks", 10):
            for stack, n in expand_stacks(f):
                if stack:
                    flat[stack[-1]] += n
                for fn in set(stack):
                    cum[fn] += n
        assert flat, "no stacks in 10 s"
        app = [fn for fn, _ in cum.most_common() if fn.startswith("main.")]
        top_flat = flat.most_common(1)[0][0]
        print(f"\nmutex: top flat {top_flat}; top main.* cumulative {app[:3]}")
        assert "main.(*inventory).reserve" in top_flat or app[0].startswith("main.(*inventory)")
    finally:
        s.close()


def test_killed_container_is_followed_to_its_new_id(cluster):
    s, fr, _ = attach(cluster, "healthy")
    try:
        hello = fr.until(lambda f: f["kind"] == "hello", 60, "hello")
        old_cid = hello["target"]["container_id"]
        pid = hello["target"]["pid"]
        os.kill(pid, signal.SIGKILL)  # the node runtime restarts it (restartPolicy: Always)
        # Whichever comes first: the agent's target_exit, or the pod poll seeing a new ID.
        fr.until(
            lambda f: (
                f["kind"] == "log"
                and ("following new ID" in f["msg"] or "new container ID" in f["msg"])
            ),
            60,
            "the session noticing the restart",
        )
        new = fr.until(
            lambda f: f["kind"] == "hello" and f["target"]["container_id"] != old_cid,
            60,
            "hello for the new container",
        )
        assert new["target"]["pid"] != pid
        assert s.health().container_id.endswith(new["target"]["container_id"].split("//")[-1])
    finally:
        s.close()


def test_pprof_only_reads_goroutines_and_cpu_profiles(cluster):
    src = cluster["source"]
    # The mutex pod is busy on its own: a short CPU profile of it always has samples
    # (the leak pod may be idle for a 2 s window on a loaded machine).
    pod = src.read_pod("demo", "mutex")
    s = AgentSession(pod, None, PprofOnlyTransport(src.api_client, cpu_seconds=2))
    fr = Frames(s)
    try:
        warn = fr.until(lambda f: f["kind"] == "log" and "Missing:" in f["msg"], 10, "notice")
        assert "futex" in warn["msg"] and "throttling" in warn["msg"]
        g = fr.until(lambda f: f["kind"] == "goroutines", 20, "goroutines via the pod proxy")
        assert g["count"] > 0 and g["source"] == "pprof_index"
        prof = fr.until(
            lambda f: f["kind"] == "profile" and f["profile"] == "cpu", 30, "cpu profile"
        )
        import base64

        from tui.profiles.pprof import Profile

        p = Profile.from_bytes(base64.b64decode(prof["data"]))
        assert p.stacks(), "the CPU profile through the API server has no samples"
    finally:
        s.close()


def test_pprof_only_on_localhost_bound_pod_says_why(cluster):
    src = cluster["source"]
    pod = src.read_pod("demo", "pprof-localhost")
    s = AgentSession(pod, None, PprofOnlyTransport(src.api_client))
    fr = Frames(s)
    try:
        err = fr.until(lambda f: f["kind"] == "error", 30, "an error frame")
        assert err["code"] == "pprof_unreachable"
        assert "localhost" in err["hint"] and "--transport ssh" in err["hint"]
    finally:
        s.close()


def test_local_transport_runs_the_real_agent(cluster, bcc):
    src = cluster["source"]
    pod = src.read_pod("demo", "leak")
    s = AgentSession(pod, None, LocalTransport(python=bcc), read_pod=src.read_pod)
    fr = Frames(s)
    try:
        fr.until(lambda f: f["kind"] == "hello", 60, "hello")
        fr.until(lambda f: f["kind"] == "goroutines" and f["count"] > 0, 30, "goroutines")
    finally:
        s.close()
