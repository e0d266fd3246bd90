"""AgentSession over a real subprocess link: decoding, bad lines, reconnect, restarts.

The agent is a stand-in script (the session logic is what is under test); the
end-to-end tests with the real agent on the sandbox are in test_session_e2e.py.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import replace

import pytest

from bpf.schema import make_command
from tui.session import AgentSession, choose_transport
from tui.sources.base import ContainerInfo, PodInfo
from tui.transports.base import TransportError
from tui.transports.local import LocalTransport

AGENT = r"""
import json, sys, time, os
args = sys.argv[1:]
cid = args[args.index("--container-id") + 1]
mode = os.environ.get("STANDIN_MODE", "")
def out(kind, **f):
    f.update(v=1, t=time.time_ns(), kind=kind)
    sys.stdout.write(json.dumps(f) + "\n"); sys.stdout.flush()
out("hello", agent="standin", host="h", kernel="", target={"cid": cid}, collectors={},
    clock_offset_ns=0)
sys.stdout.write("garbage\n{\"v\": 1}\n"); sys.stdout.flush()
out("goroutines", count=10, source="pprof_index")
if mode == "die":
    sys.exit(7)
if mode == "exit":
    out("target_exit", reason="pid 42 exited", exit_code=2)
    time.sleep(0.2)
    sys.exit(0)
import select
while True:
    r, _, _ = select.select([sys.stdin], [], [], 0.5)
    if r:
        line = sys.stdin.readline()
        if not line:
            break
        out("log", level="info", msg="cmd " + json.loads(line)["cmd"] + " " + cid[:4])
"""

CID1 = "containerd://" + "11" * 32
CID2 = "containerd://" + "22" * 32


def pod(cid: str = CID1) -> PodInfo:
    c = ContainerInfo(name="app", image="i", container_id=cid, state="running", pprof_port=6060)
    return PodInfo(
        namespace="demo", name="leak", uid="u1", status="Running", ready="1/1", restarts=0,
        created=0.0, node="node-1", cpu_limit=None, pprof_port=6060, containers=(c,),
    )  # fmt: skip


class Collector:
    def __init__(self, session: AgentSession) -> None:
        self.q: queue.Queue = queue.Queue()
        self.all: list[dict] = []
        threading.Thread(target=self._run, args=(session,), daemon=True).start()

    def _run(self, s):
        for f in s.frames():
            self.q.put(f)
        self.q.put(None)

    def wait(self, pred, timeout=15.0, what="a frame"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if f is None:
                break
            self.all.append(f)
            if pred(f):
                return f
        raise AssertionError(f"no {what}; saw {[(f['kind'], f.get('msg')) for f in self.all]}")


@pytest.fixture
def agent_cmd(tmp_path, monkeypatch):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)

    def make(mode: str = ""):
        monkeypatch.setenv("STANDIN_MODE", mode)
        return LocalTransport(command=[sys.executable, str(script)])

    return make


def test_frames_bad_lines_and_commands(agent_cmd):
    s = AgentSession(pod(), None, agent_cmd())
    c = Collector(s)
    try:
        hello = c.wait(lambda f: f["kind"] == "hello", what="hello")
        assert hello["target"]["cid"] == "11" * 32  # the bare ID went to the agent
        bad = c.wait(lambda f: f["kind"] == "log" and "unreadable" in f["msg"], what="bad-line log")
        assert bad["origin"] == "console"
        c.wait(lambda f: f["kind"] == "goroutines" and f["count"] == 10, what="goroutines")
        s.send(make_command("ping", id="1"))
        c.wait(lambda f: f.get("msg", "").startswith("cmd ping"), what="command echo")
        h = s.health()
        assert h.state == "attached" and h.bad_lines == 2 and h.frames >= 3
        assert h.last_frame_age is not None and h.last_frame_age < 5
    finally:
        s.close()
    assert s.health().state == "ended"


def test_dropped_link_reconnects_and_replays_sticky_commands(agent_cmd):
    s = AgentSession(pod(), None, agent_cmd("die"), backoff_start=0.2, backoff_max=0.4)
    s.send(make_command("enable", collector="futex"))
    c = Collector(s)
    try:
        lost = c.wait(lambda f: f["kind"] == "log" and "link to the agent lost" in f["msg"],
                      what="link lost")  # fmt: skip
        assert "exited with status 7" in lost["msg"] and "reconnecting in 0.2 s" in lost["msg"]
        c.wait(lambda f: f["kind"] == "hello", what="second hello")
        assert s.health().reconnects >= 1
    finally:
        s.close()


def test_target_exit_follows_new_container_id(agent_cmd):
    pods = [pod(CID1)]
    reads = []

    def read_pod(ns, name):
        reads.append((ns, name))
        if len(reads) >= 2:  # the runtime restarted the container
            return pod(CID2)
        return pods[0]

    s = AgentSession(pod(), None, agent_cmd("exit"), read_pod=read_pod, backoff_start=0.2)
    c = Collector(s)
    try:
        c.wait(lambda f: f["kind"] == "target_exit", what="target_exit")
        c.wait(lambda f: f["kind"] == "log" and "following new ID 222222222222" in f["msg"],
               what="follow log")  # fmt: skip
        hello = c.wait(lambda f: f["kind"] == "hello" and f["target"]["cid"] == "22" * 32,
                       what="hello for the new container")  # fmt: skip
        assert hello
        assert s.info.pod.containers[0].container_id == CID2
    finally:
        s.close()


def test_pod_status_change_triggers_reattach(agent_cmd):
    current = {"pod": pod(CID1)}
    s = AgentSession(pod(), None, agent_cmd(), read_pod=lambda ns, n: current["pod"],
                     pod_poll_s=0.2)  # fmt: skip
    c = Collector(s)
    try:
        c.wait(lambda f: f["kind"] == "hello", what="hello")
        current["pod"] = pod(CID2)
        c.wait(lambda f: f["kind"] == "log" and "new container ID" in f["msg"], what="notice")
        c.wait(lambda f: f["kind"] == "hello" and f["target"]["cid"] == "22" * 32, what="re-attach")
    finally:
        s.close()


class RefusingTransport:
    name = "ssh"

    def start(self, target):
        raise TransportError("Refusing to connect to node-1: its SSH host key is not trusted.",
                             retry=False)  # fmt: skip


def test_permanent_failure_is_a_fatal_error_frame():
    s = AgentSession(pod(), None, RefusingTransport())
    frames = list(s.frames())  # ends by itself
    err = [f for f in frames if f["kind"] == "error"]
    assert err and err[0]["fatal"] is True and "host key is not trusted" in err[0]["msg"]
    s.close()


def test_waits_for_a_container_id():
    p = pod()
    p = replace(p, containers=(replace(p.containers[0], container_id=None, state="waiting:X"),))
    s = AgentSession(p, None, RefusingTransport(), read_pod=lambda ns, n: p, backoff_start=0.1)
    c = Collector(s)
    try:
        f = c.wait(lambda f: f["kind"] == "log" and "no running container ID" in f["msg"])
        assert "waiting:X" in f["msg"]
    finally:
        s.close()


@pytest.mark.parametrize(
    "req,node,root,ssh,expect",
    [
        ("auto", "me", True, True, "local"),
        ("auto", "me", False, True, "ssh"),
        ("auto", "other", True, True, "ssh"),
        ("auto", "other", True, False, "pprof-only"),
        ("auto", "me", False, False, "pprof-only"),
        ("ssh", "me", True, False, "ssh"),
    ],
)
def test_choose_transport(req, node, root, ssh, expect):
    ch = choose_transport(req, node, is_root=root, this_host={"me"}, ssh_route=ssh)
    assert ch.name == expect and ch.why


class CountingSource:
    """Pure logic: how often the factory reads the Node object (no cluster here)."""

    api_client = None

    def __init__(self) -> None:
        self.node_reads = 0

    def read_node(self, name):
        from kubernetes.client import V1Node, V1NodeAddress, V1NodeStatus

        self.node_reads += 1
        return V1Node(status=V1NodeStatus(addresses=[
            V1NodeAddress(type="InternalIP", address="10.88.1.1"),
        ]))  # fmt: skip

    def read_pod(self, namespace, name):
        return pod()


def test_factory_reads_a_node_address_once_per_minute(monkeypatch):
    from tui.session import KubeSessionFactory

    src = CountingSource()
    f = KubeSessionFactory(src, transport="pprof-only")
    assert [f._node_address("node-1") for _ in range(3)] == ["10.88.1.1"] * 3
    assert src.node_reads == 1  # each attach asks twice; the API is asked once
    monkeypatch.setattr("tui.session.NODE_ADDRESS_TTL_S", 0.0)
    f._node_address("node-1")
    assert src.node_reads == 2


def test_factory_prepare_is_harmless_without_ssh():
    from tui.session import KubeSessionFactory

    src = CountingSource()
    f = KubeSessionFactory(src, transport="pprof-only")
    f.prepare(pod())  # returns at once; pprof-only has nothing to get ready
    deadline = time.monotonic() + 5
    while any(t.name == "attach-prepare" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "prepare() did not finish"
        time.sleep(0.05)
    assert not any(t.name == "attach-prepare" for t in threading.enumerate())
    assert src.node_reads == 0
