"""KubePodSource against a real kube-apiserver (and etcd), as the restricted user.

A control plane of its own (no nodes, no bridge), so it can run beside a
sandbox. The console reaches it through a loopback TCP relay that the tests
cut, to prove the watch reconnects and says so. Pods are created with the
admin client; the source uses the least-privilege kubeconfig (deploy/rbac.yaml).
"""

from __future__ import annotations

import queue
import shutil
import socket
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from conftest import BIN, need

from tui.sources.kube import KubePodSource

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]


class Relay:
    """A TCP relay on loopback whose connections can be cut and whose port can be closed."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                c.close()
                continue
            try:
                up = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, up]
            for a, b in ((c, up), (up, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.cut()
        self.sock.close()


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory, root):
    need((BIN / "sandbox-control").exists(), "needs the control plane binary: run `make setup`")
    from demo.sandbox import certs, controlplane, kubeconfig, manifests, procs
    from demo.sandbox.layout import Layout

    lay = Layout(Path(tmp_path_factory.mktemp("cp")))
    for d in (lay.logs, lay.pids):
        d.mkdir(parents=True, exist_ok=True)
    pki = certs.PkiPaths(lay.pki)
    certs.generate(pki, [(certs.ADMIN_USER, certs.ADMIN_GROUP), (certs.RESTRICTED_USER, None)])
    etcd_port, peer, api_port = (procs.free_port() for _ in range(3))
    binary = controlplane.find_binary()
    daemons = []
    relay = None
    try:
        etcd = controlplane.start_etcd(lay, binary, etcd_port, peer)
        daemons.append(etcd)
        controlplane.wait_etcd(etcd, etcd_port, 60)
        real_start = procs.start

        def start_without_watch_cache(piddir, name, argv, log, **kw):
            # Watches served from etcd: compacting etcd then makes an old
            # resourceVersion answer 410 Gone at once, as a long-lived cluster does.
            return real_start(piddir, name, [*argv, "--watch-cache=false"], log, **kw)

        with mock.patch.object(controlplane.procs, "start", start_without_watch_cache):
            api = controlplane.start_apiserver(lay, binary, etcd_port, api_port, pki)
        daemons.append(api)
        url = f"https://127.0.0.1:{api_port}"
        controlplane.wait_apiserver(api, url, pki, certs.ADMIN_USER, 120)
        admin_kc = lay.root / "admin.kubeconfig"
        kubeconfig.write(admin_kc, url, pki.ca_crt, pki.client_crt(certs.ADMIN_USER),
                         pki.client_key(certs.ADMIN_USER), certs.ADMIN_USER)  # fmt: skip
        from kubernetes import config

        admin = config.new_client_from_config(config_file=str(admin_kc))
        rbac = Path(__file__).resolve().parent.parent / "deploy" / "rbac.yaml"
        manifests.apply(admin, manifests.load([rbac]))
        relay = Relay(api_port)
        restricted_kc = lay.root / "restricted.kubeconfig"
        kubeconfig.write(restricted_kc, f"https://127.0.0.1:{relay.port}", pki.ca_crt,
                         pki.client_crt(certs.RESTRICTED_USER),
                         pki.client_key(certs.RESTRICTED_USER), certs.RESTRICTED_USER)  # fmt: skip
        from kubernetes import client

        core = client.CoreV1Api(admin)
        for ns in ("watch-a", "watch-b", "watch-p"):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        yield {
            "admin": core,
            "kubeconfig": str(restricted_kc),
            "relay": relay,
            "etcd_port": etcd_port,
        }
    finally:
        if relay:
            relay.close()
        for d in reversed(daemons):
            procs.stop(lay.pids, d)
        shutil.rmtree(lay.root, ignore_errors=True)


def compact_etcd(port: int) -> int:
    """Compact etcd's history up to now (the API server does this every 5 minutes)."""
    import json
    import urllib.request

    def post(path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    rev = int(post("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
    post("/v3/kv/compaction", {"revision": rev, "physical": True})
    return rev


def make_pod(name: str, ns: str = "watch-a", labels: dict | None = None):
    from kubernetes import client

    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace=ns, labels=labels or {"app": name}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="app",
                    image="sandbox.local/faultsvc",
                    ports=[client.V1ContainerPort(container_port=6060, name="pprof")],
                    resources=client.V1ResourceRequirements(limits={"cpu": "200m"}),
                )
            ]  # fmt: skip
        ),
    )


class Events:
    """Runs source.events() in a thread (as the App's worker does) and queues what it yields."""

    def __init__(self, source: KubePodSource, ns: str | None, selector: str | None = None):
        self.q: queue.Queue = queue.Queue()
        self.source = source
        self.t = threading.Thread(target=self._run, args=(ns, selector), daemon=True)
        self.t.start()

    def _run(self, ns, selector):
        for ev in self.source.events(ns, selector):
            self.q.put(ev)
        self.q.put(None)

    def wait(self, pred, timeout: float = 20.0, what: str = "an event"):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                ev = self.q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if ev is None:
                break
            seen.append(ev)
            if pred(ev):
                return ev, seen
        raise AssertionError(
            f"no {what} within {timeout} s; saw {[(e.type, e.message) for e in seen]}"
        )  # noqa: E501

    def stop(self):
        self.source.stop()
        self.t.join(timeout=15)
        assert not self.t.is_alive(), "events() did not end after stop()"


def test_reset_added_modified_deleted_as_restricted_user(apiserver):
    core = apiserver["admin"]
    core.create_namespaced_pod("watch-a", make_pod("first"))
    src = KubePodSource(apiserver["kubeconfig"])
    ev = Events(src, "watch-a")
    try:
        reset, _ = ev.wait(lambda e: e.type == "RESET", what="RESET")
        assert [p.name for p in reset.pods] == ["first"]
        assert reset.pods[0].cpu_limit == "200m" and reset.pods[0].pprof_port == 6060
        core.create_namespaced_pod("watch-a", make_pod("second"))
        added, _ = ev.wait(lambda e: e.type == "ADDED" and e.pod.name == "second", what="ADDED")
        assert added.pod.status == "Pending"
        core.patch_namespaced_pod("second", "watch-a", {"metadata": {"labels": {"x": "y"}}})
        mod, _ = ev.wait(lambda e: e.type == "MODIFIED" and e.pod.labels.get("x") == "y",
                         what="MODIFIED")  # fmt: skip
        assert mod.pod.name == "second"
        core.delete_namespaced_pod("second", "watch-a", grace_period_seconds=0)
        ev.wait(lambda e: e.type == "DELETED" and e.pod.name == "second", what="DELETED")
    finally:
        ev.stop()


def test_all_namespaces_and_selector(apiserver):
    core = apiserver["admin"]
    core.create_namespaced_pod("watch-b", make_pod("sel-1", "watch-b", {"tier": "x"}))
    core.create_namespaced_pod("watch-b", make_pod("sel-2", "watch-b", {"tier": "y"}))
    src = KubePodSource(apiserver["kubeconfig"])
    ev = Events(src, None, "tier=x")
    try:
        reset, _ = ev.wait(lambda e: e.type == "RESET", what="RESET")
        assert [p.key for p in reset.pods] == ["watch-b/sel-1"]
    finally:
        ev.stop()


def test_list_in_pages_then_watch_from_the_lists_version(apiserver, monkeypatch):
    import tui.sources.kube as kube

    core = apiserver["admin"]
    for i in range(7):
        core.create_namespaced_pod("watch-p", make_pod(f"paged-{i}", "watch-p"))
    monkeypatch.setattr(kube, "LIST_PAGE", 3)  # 7 pods: pages of 3, 3, 1
    src = KubePodSource(apiserver["kubeconfig"])
    ev = Events(src, "watch-p")
    try:
        reset, _ = ev.wait(lambda e: e.type == "RESET", what="RESET")
        assert [p.name for p in reset.pods] == [f"paged-{i}" for i in range(7)]
        # The watch starts from the snapshot's version: a pod made now is ADDED once,
        # and none of the listed ones come again.
        core.create_namespaced_pod("watch-p", make_pod("after", "watch-p"))
        added, seen = ev.wait(lambda e: e.type == "ADDED" and e.pod.name == "after",
                              what="ADDED after the paged list")  # fmt: skip
        assert not [e for e in seen if e.type == "ADDED" and e.pod.name.startswith("paged-")]
    finally:
        ev.stop()


def test_410_gone_relists(apiserver):
    core = apiserver["admin"]
    # Server-side watch timeout of 2 s: the source re-watches from its last
    # resourceVersion every 2 s, as it does (every few minutes) on a real cluster.
    src = KubePodSource(apiserver["kubeconfig"], backoff_start=0.2, watch_timeout=2)
    ev = Events(src, "watch-a")
    try:
        ev.wait(lambda e: e.type == "RESET", what="RESET")
        old_rv = int(src.resource_version)
        # Elsewhere the cluster moves on, and etcd compacts its history past our version.
        core.create_namespaced_pod("watch-b", make_pod("elsewhere", "watch-b"))
        for i in range(3):
            core.patch_namespaced_pod(
                "elsewhere", "watch-b", {"metadata": {"labels": {"i": str(i)}}}
            )
        assert compact_etcd(apiserver["etcd_port"]) > old_rv
        status, _ = ev.wait(lambda e: e.type == "STATUS" and "410" in e.message, what="410 STATUS")
        assert "listing again" in status.message
        reset, _ = ev.wait(lambda e: e.type == "RESET", what="RESET after 410")
        assert int(src.resource_version) > old_rv
        core.create_namespaced_pod("watch-a", make_pod("after-410"))
        ev.wait(lambda e: e.type == "ADDED" and e.pod.name == "after-410", what="ADDED after 410")
    finally:
        ev.stop()


def test_reconnects_with_backoff_after_connection_cut(apiserver):
    core = apiserver["admin"]
    relay = apiserver["relay"]
    src = KubePodSource(apiserver["kubeconfig"], backoff_start=0.5, backoff_max=4)
    ev = Events(src, "watch-a")
    try:
        ev.wait(lambda e: e.type == "RESET", what="RESET")
        relay.refusing = True
        relay.cut()
        first, _ = ev.wait(lambda e: e.type == "STATUS" and "watch dropped" in e.message,
                           what="'watch dropped'")  # fmt: skip
        assert "Reconnecting in 0.5 s" in first.message
        second, _ = ev.wait(lambda e: e.type == "STATUS" and "Reconnecting in 1 s" in e.message,
                            what="a longer backoff")  # fmt: skip
        relay.refusing = False
        ev.wait(lambda e: e.type == "STATUS" and "watching pods again" in e.message,
                timeout=30, what="recovery")  # fmt: skip
        core.create_namespaced_pod("watch-a", make_pod("after-cut"))
        ev.wait(lambda e: e.type == "ADDED" and e.pod.name == "after-cut", what="ADDED after cut")
    finally:
        relay.refusing = False
        ev.stop()


def test_forbidden_namespace_listing_is_reported(apiserver, tmp_path):
    # The restricted user may list pods everywhere but not create them; check the
    # describe path on a real 403 from the server.
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from tui.cluster import describe_api_error

    src = KubePodSource(apiserver["kubeconfig"])
    with pytest.raises(ApiException) as ei:
        src.core().create_namespaced_pod("watch-a", make_pod("nope"))
    msg = describe_api_error(ei.value, "create a pod")
    assert "forbidden (403)" in msg and "godebug-operator" in msg
    assert isinstance(src.core(), client.CoreV1Api)


def test_agent_pod_template_is_accepted_for_the_restricted_user(apiserver):
    """deploy/agent-pod.yaml validates on a real API server; RBAC lets the operator create it."""
    import yaml
    from kubernetes import client

    text = (Path(__file__).resolve().parent.parent / "deploy" / "agent-pod.yaml").read_text()
    text = text.replace("NODE_NAME", "node-1").replace("POD_UID", "uid-1")
    doc = yaml.safe_load(text.replace("CONTAINER_ID", "containerd://" + "ab" * 32))
    assert doc["spec"]["hostPID"] and doc["spec"]["containers"][0]["securityContext"]["privileged"]
    src = KubePodSource(apiserver["kubeconfig"])
    created = src.core().create_namespaced_pod("godebug", doc, dry_run="All")
    assert isinstance(created, client.V1Pod)
    assert created.spec.node_name == "node-1" and created.spec.host_pid is True


def test_use_context_relists_from_the_new_context(apiserver, tmp_path):
    import yaml

    kc = yaml.safe_load(Path(apiserver["kubeconfig"]).read_text())
    ctx = kc["contexts"][0]
    kc["contexts"].append({"name": "second", "context": dict(ctx["context"], namespace="watch-b")})
    path = tmp_path / "two.kubeconfig"
    path.write_text(yaml.safe_dump(kc))
    src = KubePodSource(str(path))
    assert src.contexts() == [ctx["name"], "second"]
    ev = Events(src, "watch-a")
    try:
        ev.wait(lambda e: e.type == "RESET", what="RESET")
        src.use_context("second")
        assert src.current_context == "second" and src.default_namespace == "watch-b"
        ev.wait(lambda e: e.type == "RESET", what="RESET after switching context")
    finally:
        ev.stop()
    from tui.cluster import ClusterError

    with pytest.raises(ClusterError, match="no context named 'third'"):
        src.use_context("third")


def test_restarting_the_watch_leaves_one_clean_stream(apiserver):
    """The App restarts its watch with stop() then events(): the old stream must end
    quietly and the new one must not see its connection cut."""
    core = apiserver["admin"]
    src = KubePodSource(apiserver["kubeconfig"])
    old = Events(src, "watch-a")
    old.wait(lambda e: e.type == "RESET", what="RESET")
    src.stop()
    new = Events(src, "watch-a")
    try:
        old.t.join(timeout=15)
        assert not old.t.is_alive(), "the old events() kept running after stop()"
        new.wait(lambda e: e.type == "RESET", what="RESET of the new stream")
        time.sleep(2)
        core.create_namespaced_pod("watch-a", make_pod("after-restart"))
        _, seen = new.wait(lambda e: e.type == "ADDED" and e.pod.name == "after-restart",
                           what="ADDED on the new stream")  # fmt: skip
        assert not [e for e in seen if e.type == "STATUS"], [e.message for e in seen]
    finally:
        new.stop()
