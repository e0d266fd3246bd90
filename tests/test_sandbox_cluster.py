"""The running sandbox: API server, RBAC for the restricted user, nodes, ssh, CLI.

All tests share the session's sandbox (2 nodes, demo pods Running).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from demo.sandbox import certs

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def _get(url: str, pki: certs.PkiPaths, user: str | None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    if user:
        ctx.load_cert_chain(str(pki.client_crt(user)), str(pki.client_key(user)))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_apiserver_serves_v1_34_4_over_verified_tls(sandbox) -> None:
    pki = certs.PkiPaths(sandbox.state_dir / "pki")
    status, body = _get(f"{sandbox.api_url}/version", pki, certs.ADMIN_USER)
    assert status == 200
    assert json.loads(body)["gitVersion"] == "v1.34.4"
    # No client certificate: anonymous auth is off.
    status, _ = _get(f"{sandbox.api_url}/version", pki, None)
    assert status == 401


def _can(api: client.ApiClient, verb: str, resource: str, namespace: str | None = None,
         sub: str | None = None) -> bool:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, namespace=namespace, subresource=sub
            )
        )
    )
    return client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed


ALLOWED = [
    ("list", "pods", None, None),
    ("watch", "pods", None, None),
    ("get", "pods", "demo", None),
    ("get", "pods", "demo", "proxy"),
    ("list", "nodes", None, None),
    ("get", "nodes", None, None),
    ("list", "namespaces", None, None),
    ("create", "pods", "godebug", None),
    ("delete", "pods", "godebug", None),
    ("watch", "pods", "godebug", None),
    ("create", "pods", "godebug", "exec"),
    ("get", "pods", "godebug", "exec"),
]
DENIED = [
    ("list", "secrets", None, None),
    ("get", "secrets", "godebug", None),
    ("delete", "pods", "demo", None),
    ("create", "pods", "demo", None),
    ("create", "pods", "demo", "exec"),
    ("get", "pods", "demo", "log"),
    ("create", "nodes", None, None),
    ("patch", "nodes", None, None),
    ("update", "pods", "godebug", "status"),
    ("create", "pods", "demo", "ephemeralcontainers"),
    ("create", "clusterrolebindings", None, None),
    ("get", "pods", "godebug", "portforward"),
    # The pod transport execs into its agent pod; it never attaches or reads its logs.
    ("create", "pods", "godebug", "attach"),
    ("get", "pods", "godebug", "log"),
]


@pytest.mark.parametrize("verb,resource,ns,sub", ALLOWED)
def test_restricted_user_is_allowed(sandbox, verb, resource, ns, sub) -> None:
    api = sandbox.api_client(restricted=True)
    assert _can(api, verb, resource, ns, sub), f"{verb} {resource}/{sub} in {ns} should be allowed"


@pytest.mark.parametrize("verb,resource,ns,sub", DENIED)
def test_restricted_user_is_denied(sandbox, verb, resource, ns, sub) -> None:
    api = sandbox.api_client(restricted=True)
    assert not _can(api, verb, resource, ns, sub), f"{verb} {resource}/{sub} in {ns} is too much"


def test_restricted_user_real_calls(sandbox) -> None:
    core = client.CoreV1Api(sandbox.api_client(restricted=True))
    pods = core.list_pod_for_all_namespaces().items
    assert {p.metadata.namespace for p in pods} >= {"demo"}
    assert len(core.list_node().items) == 2

    def status_of(call) -> int:
        with pytest.raises(client.ApiException) as exc:
            call()
        return exc.value.status

    assert status_of(lambda: core.list_secret_for_all_namespaces()) == 403
    victim = pods[0]
    assert status_of(
        lambda: core.delete_namespaced_pod(victim.metadata.name, victim.metadata.namespace)
    ) == 403
    node = client.V1Node(metadata=client.V1ObjectMeta(name="rogue-node"))
    assert status_of(lambda: core.create_node(node, dry_run="All")) == 403
    # The agent pod may be created in its own namespace (dry run: nothing is persisted).
    agent = client.V1Pod(
        metadata=client.V1ObjectMeta(name="godebug-agent-probe"),
        spec=client.V1PodSpec(
            node_name="node-1", containers=[client.V1Container(name="a", image="x")]
        ),
    )
    created = core.create_namespaced_pod("godebug", agent, dry_run="All")
    assert created.metadata.name == "godebug-agent-probe"
    assert status_of(lambda: core.create_namespaced_pod("demo", agent, dry_run="All")) == 403


def test_restricted_user_reads_pprof_through_pod_proxy(sandbox) -> None:
    core = client.CoreV1Api(sandbox.api_client(restricted=True))
    resp = core.connect_get_namespaced_pod_proxy_with_path(
        "healthy:6060", "demo", "debug/pprof/", _preload_content=False
    )
    assert resp.status == 200
    assert b"goroutine" in resp.data


def test_two_nodes_ready_with_bridge_addresses_and_pods_on_both(sandbox) -> None:
    core = client.CoreV1Api(sandbox.api_client())
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert sorted(nodes) == ["node-1", "node-2"]
    for name, ip in sandbox.nodes:
        n = nodes[name]
        assert any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
        assert [a.address for a in n.status.addresses if a.type == "InternalIP"] == [ip]
    assert sandbox.nodes == [("node-1", "10.88.1.1"), ("node-2", "10.88.2.1")]
    placed = {p.spec.node_name for p in core.list_namespaced_pod("demo").items}
    assert placed == {"node-1", "node-2"}


@pytest.mark.parametrize("node", ["node-1", "node-2"])
def test_ssh_to_node_with_generated_config(sandbox, node: str) -> None:
    r = subprocess.run(
        ["ssh", "-F", str(sandbox.ssh_config), node, "echo ok; id -u"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "0"]


def test_ssh_rejects_a_wrong_host_key(sandbox, tmp_path: Path) -> None:
    # A known_hosts that names node-1 with another key: strict checking must refuse.
    wrong = tmp_path / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    kind, key = Path(f"{wrong}.pub").read_text().split()[:2]
    ip = dict(sandbox.nodes)["node-1"]
    bad_known = tmp_path / "known_hosts"
    bad_known.write_text(f"node-1,{ip} {kind} {key}\n")
    cfg = sandbox.ssh_config.read_text().replace(str(sandbox.known_hosts), str(bad_known))
    bad_cfg = tmp_path / "ssh_config"
    bad_cfg.write_text(cfg)
    r = subprocess.run(["ssh", "-F", str(bad_cfg), "node-1", "true"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr


def test_cli_status_and_kubeconfig(sandbox) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tui.cli", "sandbox", *args, "--state-dir",
             str(sandbox.state_dir)],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )

    r = cli("kubeconfig")
    assert r.returncode == 0 and r.stdout.strip() == str(sandbox.admin_kubeconfig)
    r = cli("kubeconfig", "--restricted")
    assert r.stdout.strip() == str(sandbox.restricted_kubeconfig)
    r = cli("status", "--json")
    st = json.loads(r.stdout)
    assert st["up"] is True and st["version"] == "v1.34.4"
    names = {p["name"] for p in st["processes"] if p["alive"]}
    assert {"etcd", "apiserver", "node-node-1", "node-node-2", "sshd-node-1"} <= names
    assert all(p["rss_kib"] for p in st["processes"] if p["alive"])
    r = cli("status")
    assert r.returncode == 0
    assert "ssh -F" in r.stdout and "healthy" in r.stdout


def test_up_with_another_node_count_is_refused(sandbox) -> None:
    from demo.sandbox.api import SandboxError

    with pytest.raises(SandboxError, match="already up with 2 node"):
        sandbox.up(nodes=1)


def test_sandbox_network_cannot_leave_the_machine(sandbox) -> None:
    from demo.sandbox import netguard

    # The bridge carries 10.88/16; the blackhole route catches it if the bridge goes.
    assert netguard.present()
    r = subprocess.run(["ip", "route", "get", "10.88.200.9"], capture_output=True, text=True)
    assert "dev gkd0" in r.stdout, r.stdout + r.stderr
