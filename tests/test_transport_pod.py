"""The pod transport: the agent in a short-lived privileged pod, reached by exec.

Pure pieces first (pod name, spec, failure reading, the loader's stdin framing);
then end to end on the sandbox as the restricted user: console -> kube-apiserver
(RBAC, pods/exec) -> the node's kubelet API (mTLS, v4 websocket) -> nsenter into
the agent pod -> the real agent with bcc -> frames back.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import SYSTEM_PYTHON, need

from tui.transports.pod import (
    LOADER,
    agent_pod_manifest,
    agent_pod_name,
    bundle_line,
    pod_problem,
    pod_running,
)

ROOT = Path(__file__).resolve().parent.parent
AGENT_IMAGE = "sandbox.local/python3-bcc"
NS = "godebug"


# ---------------------------------------------------------------- pure pieces


def test_pod_name_is_a_valid_dns_label_for_hostile_node_names() -> None:
    import re

    for node in ["node-1", "[bold]Node_2[/]", "\x1b[31mred\x1b[0m", "n" * 300, "", None]:
        name = agent_pod_name(node)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert len(name) <= 63 and name.startswith("godebug-agent-")
    assert agent_pod_name("node-1") != agent_pod_name("node-1")  # unique per start


def test_manifest_matches_deploy_agent_pod_yaml() -> None:
    """The spec the console creates is the one deploy/agent-pod.yaml documents."""
    doc = yaml.safe_load((ROOT / "deploy" / "agent-pod.yaml").read_text())
    built = agent_pod_manifest("godebug-agent-NODE_NAME", NS, "NODE_NAME", "AGENT_IMAGE")
    assert doc == built
    spec = built["spec"]
    c = spec["containers"][0]
    assert spec["hostPID"] and c["securityContext"] == {"privileged": True, "runAsUser": 0}
    assert spec["activeDeadlineSeconds"] > 0 and spec["restartPolicy"] == "Never"
    assert built["metadata"]["labels"]["app.kubernetes.io/name"] == "go-k8s-debug"
    ro = {m["mountPath"]: m["readOnly"] for m in c["volumeMounts"]}
    assert ro["/sys"] and ro["/lib/modules"] and ro["/usr/src"]


def _cs(state: dict) -> dict:
    statuses = [{"name": "agent", "state": state}]
    return {"status": {"phase": "Pending", "containerStatuses": statuses}}


def test_pod_problem_names_the_fix() -> None:
    pull = _cs({"waiting": {"reason": "ErrImagePull", "message": "not found"}})
    msg = pod_problem(pull, "x/y")
    assert msg and "ErrImagePull" in msg and "--agent-image" in msg and "python3" in msg
    assert pod_problem(_cs({"waiting": {"reason": "ContainerCreating"}}), "i") is None
    failed = {"status": {"phase": "Failed", "reason": "OutOfcpu", "message": "no room"}}
    assert "OutOfcpu" in (pod_problem(failed, "i") or "")
    unsched = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "taint"}
    ]}}  # fmt: skip
    assert "cannot be scheduled" in (pod_problem(unsched, "i") or "")
    running = _cs({"running": {"startedAt": "now"}})
    running["status"]["phase"] = "Running"
    assert pod_running(running) and not pod_running(pull)


def test_loader_reads_exactly_the_bundle_line_and_keeps_later_commands() -> None:
    """The real loader under python3: the bundle runs with the args; a command sent
    right behind the bundle (same write) still reaches it on stdin."""
    main = (
        "import sys, json\n"
        "print(json.dumps({'argv': sys.argv[1:], 'line': sys.stdin.readline()}), flush=True)\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("__main__.py", main)
    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
    out = subprocess.run(
        [python, "-c", LOADER, "--pod-uid", "u-1", "--container-id", "abc"],
        input=bundle_line(buf.getvalue()) + b'{"cmd": "enable"}\n',
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got == {"argv": ["--pod-uid", "u-1", "--container-id", "abc"],
                   "line": '{"cmd": "enable"}\n'}  # fmt: skip
    short = subprocess.run(
        [python, "-c", LOADER], input=b"100 abc", capture_output=True, timeout=30
    )
    assert short.returncode != 0 and b"in the middle of the agent bundle" in short.stderr


def test_keeper_ends_when_the_agent_is_gone(root, tmp_path) -> None:
    """The pod's main process, for real, in a mount namespace of its own (as in a pod)."""
    from tui.transports.pod import KEEPER

    python = SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable
    keeper = KEEPER.format(lifetime=60, idle=60)
    agent = "import time; time.sleep(3)"
    # A script file: a shell whose own command line named the agent would count as one.
    script = tmp_path / "pod.sh"
    script.write_text(
        f"{python} -c '{keeper}' & k=$!\n{python} -c '{agent}' go-k8s-debug-agent &\n"
        "wait $k\necho keeper-done\n"
    )
    t0 = time.monotonic()
    out = subprocess.run(["unshare", "--mount", "sh", str(script)], capture_output=True,
                         text=True, timeout=30)  # fmt: skip
    took = time.monotonic() - t0
    assert out.returncode == 0 and "keeper-done" in out.stdout, out.stderr
    # Ended a few seconds after the 3 s agent, long before the 60 s limits.
    assert 3 <= took < 15, took
    idle = KEEPER.format(lifetime=60, idle=1)
    t0 = time.monotonic()
    subprocess.run(["unshare", "--mount", python, "-c", idle], check=True, timeout=30)
    assert time.monotonic() - t0 < 10, "no agent ever came: the keeper ends after idle_s"


def test_refusals_name_the_fix() -> None:
    """ApiExceptions as the API server sends them (bodies as seen from kube-apiserver 1.34)."""
    from kubernetes.client.rest import ApiException

    from tui.transports.pod import PodTransport, _handshake_status

    t = PodTransport.__new__(PodTransport)
    t.namespace = "godebug"

    def exc(status: int, message: str) -> ApiException:
        e = ApiException(status=status, reason="x")
        e.body = json.dumps({"kind": "Status", "message": message})
        return e

    pss = t._create_error(exc(403, 'pods "a" is forbidden: violates PodSecurity "baseline'
                                   ':latest": privileged (container "agent" must not set ...)'))
    assert "Pod Security" in str(pss) and "enforce=privileged" in str(pss) and not pss.retry
    rbac = t._create_error(exc(403, 'pods is forbidden: User "op" cannot create resource'))
    assert "deploy/rbac.yaml" in str(rbac) and "--agent-namespace" in str(rbac)
    assert "does not exist" in str(t._create_error(exc(404, 'namespaces "godebug" not found')))
    assert t._create_error(exc(500, "etcd timeout")).retry
    # A websocket handshake failure, as the kubernetes client wraps it.
    wrapped = ApiException(status=0, reason=(
        "Handshake status 500 Internal Server Error -+-+- {'content-type': 'application/json'}"
        ' -+-+- b\'{"kind":"Status","message":"error dialing backend: dial tcp '
        '10.88.9.1:10250: connect: connection refused","code":500}\''
    ))  # fmt: skip
    status, msg = _handshake_status(wrapped)
    assert status == 500 and msg.startswith("error dialing backend") and "10250" in msg


# ---------------------------------------------------------------- on the sandbox


class Frames:
    """A session's frames, collected in a thread as the App's worker would."""

    def __init__(self, session) -> None:
        self.q: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._run, args=(session,), daemon=True).start()

    def _run(self, session) -> None:
        for f in session.frames():
            self.q.put(f)
        self.q.put(None)

    def until(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if f is None:
                break
            self.seen.append(f)
            if pred(f):
                return f
        logs = [(f["kind"], f.get("msg") or f.get("code")) for f in self.seen
                if f["kind"] in ("log", "error")]  # fmt: skip
        raise AssertionError(f"no {what} within {timeout} s; log/error frames: {logs[-12:]}")

    def fatal_error(self, timeout: float) -> dict:
        return self.until(lambda f: f["kind"] == "error" and f.get("fatal"), timeout, "fatal error")

    def logs(self, timeout: float = 20) -> list[str]:
        """Log messages, including those after the session closed (reads to the end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                f = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if f is None:
                break
            self.seen.append(f)
        return [f["msg"] for f in self.seen if f["kind"] == "log"]


@pytest.fixture(scope="module")
def cluster(sandbox):
    from kubernetes import client

    from tui.sources.kube import KubePodSource

    src = KubePodSource(str(sandbox.restricted_kubeconfig))
    admin = client.CoreV1Api(sandbox.api_client())
    yield {"sandbox": sandbox, "source": src, "admin": admin}
    src.stop()


def _factory(cluster, image: str = AGENT_IMAGE, namespace: str = NS):
    from tui.session import KubeSessionFactory

    return KubeSessionFactory(
        cluster["source"], transport="pod", agent_image=image, agent_namespace=namespace
    )


def _agent_pods(cluster) -> list:
    return cluster["admin"].list_namespaced_pod(
        NS, label_selector="app.kubernetes.io/name=go-k8s-debug"
    ).items


def _wait_no_agent_pods(cluster, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _agent_pods(cluster):
        assert time.monotonic() < deadline, [p.metadata.name for p in _agent_pods(cluster)]
        time.sleep(0.2)


def _procs_in_pod_cgroup(uid: str) -> list[int]:
    """Host PIDs whose cgroup path names pod ``uid`` (kubelet cgroup naming, v1 or v2)."""
    keys = (f"pod{uid}", f"pod{uid.replace('-', '_')}")
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cg = (d / "cgroup").read_text()
        except OSError:
            continue
        if any(k in cg for k in keys):
            out.append(int(d.name))
    return out


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.ebpf
def test_attach_over_pod_transport_as_restricted_user(cluster) -> None:
    need(os.path.isdir("/usr/lib/python3/dist-packages/bcc"), "needs python3-bpfcc")
    pod = cluster["source"].read_pod("demo", "leak")
    assert pod.status == "Running"
    t0 = time.monotonic()
    s = _factory(cluster).attach(pod)
    fr = Frames(s)
    agent_uid = ""
    try:
        hello = fr.until(lambda f: f["kind"] == "hello", 90, "hello")
        t_hello = time.monotonic() - t0
        assert hello["target"]["container_id"] in pod.containers[0].container_id
        first = fr.until(lambda f: f["kind"] == "goroutines", 30, "goroutines")
        t_first = time.monotonic() - t0
        later = [fr.until(lambda f: f["kind"] == "goroutines", 10, "more goroutines")
                 for _ in range(4)]  # fmt: skip
        assert later[-1]["count"] > first["count"], (first["count"], later[-1]["count"])
        # eBPF from inside the pod: bcc compiled against the node's headers (hostPath
        # /lib/modules, /usr/src) and sampled the target's stacks, symbolized.
        stacks = fr.until(lambda f: f["kind"] == "cpu_stacks" and f["samples"] > 0, 90,
                          "cpu_stacks with samples")  # fmt: skip
        t_stacks = time.monotonic() - t0
        assert any(name.startswith("runtime.") for name in stacks["funcs"]), stacks["funcs"]
        agents = _agent_pods(cluster)
        assert len(agents) == 1 and agents[0].spec.node_name == pod.node
        agent_uid = agents[0].metadata.uid
        assert _procs_in_pod_cgroup(agent_uid), "the agent runs in the agent pod's cgroup"
        h = s.health()
        assert h.state == "attached" and h.description.startswith(f"pod {NS}/godebug-agent-")
        timings = s._transport.timings
        print(
            f"\npod transport: create->Running {timings['create_to_running_s']:.2f} s, "
            f"exec+bundle {timings['exec_and_bundle_s']:.2f} s, hello {t_hello:.2f} s, "
            f"first goroutines {t_first:.2f} s, first CPU stacks {t_stacks:.2f} s after attach; "
            f"{first['count']} -> {later[-1]['count']}"
        )
    finally:
        s.close()
    logs = fr.logs()
    assert any(m.startswith(f"created agent pod {NS}/godebug-agent-") for m in logs), logs
    assert any(m.startswith(f"deleted agent pod {NS}/godebug-agent-") for m in logs), logs
    _wait_no_agent_pods(cluster)
    deadline = time.monotonic() + 10
    while _procs_in_pod_cgroup(agent_uid):
        assert time.monotonic() < deadline, "agent pod processes outlived the pod"
        time.sleep(0.2)


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.ebpf
def test_agent_pod_ends_itself_when_the_console_dies(cluster) -> None:
    """The console vanishes without deleting its pod: only the exec connection drops.
    The agent gets stdin EOF and exits; the pod's main process then ends the pod."""
    need(os.path.isdir("/usr/lib/python3/dist-packages/bcc"), "needs python3-bpfcc")
    from tui.cluster import parse_container_id, select_container
    from tui.transports.base import AgentTarget
    from tui.transports.pod import PodTransport

    pod = cluster["source"].read_pod("demo", "leak")
    c = select_container(pod, None)
    target = AgentTarget(pod, c, parse_container_id(c.container_id)[1], pod.node)
    t = PodTransport(cluster["source"].api_client, AGENT_IMAGE)
    link = t.start(target)
    try:
        lines = link.lines()
        assert json.loads(next(lines))["kind"] in ("hello", "log")
        link._ws.close()  # as if the console were killed: no delete is sent
        deadline = time.monotonic() + 30
        while True:
            phase = cluster["admin"].read_namespaced_pod(link.name, NS).status.phase
            if phase == "Succeeded":
                break
            assert time.monotonic() < deadline, f"agent pod still {phase} 30 s after the drop"
            time.sleep(0.5)
        assert not _procs_in_pod_cgroup(
            cluster["admin"].read_namespaced_pod(link.name, NS).metadata.uid
        )
    finally:
        link.close()
    _wait_no_agent_pods(cluster)


@pytest.mark.sandbox
@pytest.mark.slow
def test_unknown_agent_image_is_a_clear_error_and_leaves_nothing(cluster) -> None:
    pod = cluster["source"].read_pod("demo", "leak")
    s = _factory(cluster, image="sandbox.local/no-such-agent").attach(pod)
    fr = Frames(s)
    try:
        err = fr.fatal_error(60)
    finally:
        s.close()
    assert err["code"] == "attach_failed"
    # The kubelet flips between ErrImagePull and ImagePullBackOff on retries; a slow
    # watcher may see only the second. Either is the same clear refusal.
    assert "ErrImagePull" in err["msg"] or "ImagePullBackOff" in err["msg"], err["msg"]
    assert "could not pull the agent image" in err["msg"], err["msg"]
    assert "--agent-image" in err["msg"], err["msg"]
    assert any(m.startswith("deleted agent pod") for m in fr.logs()), fr.logs()
    _wait_no_agent_pods(cluster)


@pytest.mark.sandbox
@pytest.mark.slow
def test_namespace_without_permission_is_a_clear_error(cluster) -> None:
    pod = cluster["source"].read_pod("demo", "leak")
    s = _factory(cluster, namespace="demo").attach(pod)
    fr = Frames(s)
    try:
        err = fr.fatal_error(30)
    finally:
        s.close()
    msg = err["msg"]
    assert "403" in msg and "'demo'" in msg and "deploy/rbac.yaml" in msg, msg
    assert "--agent-namespace" in msg
    assert not [p for p in cluster["admin"].list_namespaced_pod("demo").items
                if p.metadata.name.startswith("godebug-agent-")]  # fmt: skip


@pytest.mark.sandbox
@pytest.mark.slow
def test_node_without_kubelet_api_is_a_clear_error(cluster, tmp_path) -> None:
    """A third, real node runtime that serves no kubelet API: exec cannot reach it."""
    from kubernetes import client

    sb = cluster["sandbox"]
    name, ip = "node-noexec", "10.88.9.1"
    assert ip not in {i for _, i in sb.nodes}
    node = subprocess.Popen(
        [sys.executable, "-m", "demo.sandbox.node", "run", "--kubeconfig",
         str(sb.admin_kubeconfig), "--node-name", name, "--node-ip", ip,
         "--state-dir", str(tmp_path / name), "--no-kubelet-api"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "node.log", "wb"),
    )  # fmt: skip
    admin = cluster["admin"]
    try:
        deadline = time.monotonic() + 60
        while True:
            assert node.poll() is None, (tmp_path / "node.log").read_text()[-2000:]
            try:
                conds = admin.read_node_status(name).status.conditions or []
                if any(c.type == "Ready" and c.status == "True" for c in conds):
                    break
            except client.ApiException:
                pass
            assert time.monotonic() < deadline, "the extra node did not become Ready"
            time.sleep(0.3)
        leak = cluster["source"].read_pod("demo", "leak")
        # The agent pod goes to the target's node: point the target at the extra node.
        pod = dataclasses.replace(leak, node=name)
        s = _factory(cluster).attach(pod)
        fr = Frames(s)
        try:
            err = fr.fatal_error(60)
        finally:
            s.close()
        msg = err["msg"]
        assert "kubelet" in msg and "10250" in msg, msg
        assert any(m.startswith("deleted agent pod") for m in fr.logs()), fr.logs()
        _wait_no_agent_pods(cluster)
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        try:
            admin.delete_node(name)
        except client.ApiException:
            pass
