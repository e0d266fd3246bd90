"""etcd and kube-apiserver, both from the one `sandbox-control` binary.

Flags follow controller-runtime's envtest (research/k8s_testbed.md §4): no
controller-manager and no scheduler run, so the ServiceAccount admission plugin
is off and the sandbox binds pods to nodes itself.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from demo.sandbox import procs
from demo.sandbox.certs import KUBELET_CLIENT_USER, PkiPaths
from demo.sandbox.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
SERVICE_CIDR = "10.96.0.0/16"


def find_binary() -> Path:
    """The control-plane binary: $GO_K8S_DEBUG_CONTROL, build/bin, or a dev build in /tmp."""
    env = os.environ.get("GO_K8S_DEBUG_CONTROL")
    candidates = [Path(env)] if env else []
    candidates += [ROOT / "build" / "bin" / "sandbox-control", Path("/tmp/sandbox-control")]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError(
        "the control-plane binary build/bin/sandbox-control is missing: run `make setup` "
        "(it builds etcd and kube-apiserver from Go modules)"
    )


def start_etcd(lay: Layout, binary: Path, client_port: int, peer_port: int) -> procs.Daemon:
    """Start etcd on loopback with a data dir in the state directory."""
    client = f"http://127.0.0.1:{client_port}"
    argv = [
        str(binary),
        "etcd",
        "--name=sandbox",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=sandbox=http://127.0.0.1:{peer_port}",
        # A throwaway test cluster: durability is not worth an fsync per write.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=536870912",
        "--log-level=warn",
    ]
    return procs.start(lay.pids, "etcd", argv, lay.logs / "etcd.log")


def start_apiserver(
    lay: Layout,
    binary: Path,
    etcd_port: int,
    secure_port: int,
    pki: PkiPaths,
    extra: Sequence[str] = (),
) -> procs.Daemon:
    """Start kube-apiserver with TLS, client-certificate authn and RBAC authz."""
    argv = [
        str(binary),
        "apiserver",
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # No controller-manager creates default ServiceAccounts, so pods would be refused.
        "--disable-admission-plugins=ServiceAccount",
        "--authorization-mode=RBAC",
        "--anonymous-auth=false",
        f"--secure-port={secure_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--tls-cert-file={pki.apiserver_crt}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca_crt}",
        f"--service-account-issuer=https://127.0.0.1:{secure_port}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        # exec goes to each node runtime's kubelet API (node/kubelet_api.py) at the
        # Node's InternalIP: verified against the sandbox CA, and authenticated with
        # a client certificate the kubelet API requires.
        "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={pki.ca_crt}",
        f"--kubelet-client-certificate={pki.client_crt(KUBELET_CLIENT_USER)}",
        f"--kubelet-client-key={pki.client_key(KUBELET_CLIENT_USER)}",
        # Priority-and-fairness adds its own watchers and config objects; one user
        # does not need it and start-up is quicker without.
        "--enable-priority-and-fairness=false",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
        *extra,
    ]
    return procs.start(lay.pids, "apiserver", argv, lay.logs / "apiserver.log")


def _ssl_context(pki: PkiPaths, user: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    ctx.load_cert_chain(str(pki.client_crt(user)), str(pki.client_key(user)))
    return ctx


def wait_etcd(d: procs.Daemon, port: int, timeout: float) -> None:
    """Poll etcd's /health until it answers healthy."""
    deadline = time.monotonic() + timeout
    while True:
        if not d.alive():
            raise RuntimeError("etcd exited during start-up: see the log etcd.log in the state dir")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if b'"true"' in r.read():
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"etcd did not become healthy within {timeout:.0f} s")
        time.sleep(0.1)


def wait_apiserver(
    d: procs.Daemon, url: str, pki: PkiPaths, user: str, timeout: float
) -> None:
    """Poll the API server's /readyz with the admin certificate until it answers ok."""
    ctx = _ssl_context(pki, user)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        if not d.alive():
            raise RuntimeError(
                "kube-apiserver exited during start-up: see apiserver.log in the state dir"
            )
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2, context=ctx) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = e.read().decode(errors="replace")[-300:]
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        if time.monotonic() > deadline:
            raise TimeoutError(f"kube-apiserver was not ready within {timeout:.0f} s: {last}")
        time.sleep(0.1)
