"""Pure and local tests of the sandbox's parts: PKI, kubeconfigs, pod binding, daemons, CLI."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from demo.sandbox import certs, kubeconfig, manifests, procs, sshd
from demo.sandbox.cli import main as cli_main
from demo.sandbox.layout import ENV_STATE_DIR, Layout, default_state_dir

ROOT = Path(__file__).resolve().parent.parent


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_serving_and_client_certs_chain_to_the_ca(tmp_path: Path) -> None:
    pki = certs.PkiPaths(tmp_path / "pki")
    certs.generate(pki, [("sandbox-admin", "system:masters"), ("godebug-operator", None)])
    ca = _cert(pki.ca_crt)
    srv = _cert(pki.apiserver_crt)
    # verify_directly_issued_by checks the signature and the issuer name.
    srv.verify_directly_issued_by(ca)
    sans = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    eku = srv.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku

    admin = _cert(pki.client_crt("sandbox-admin"))
    admin.verify_directly_issued_by(ca)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sandbox-admin"
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    op = _cert(pki.client_crt("godebug-operator"))
    assert op.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert pki.ca_key.stat().st_mode & 0o077 == 0, "private keys must not be group/world readable"
    assert pki.sa_pub.read_text().startswith("-----BEGIN PUBLIC KEY")


def test_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    pki = certs.PkiPaths(tmp_path / "pki")
    certs.generate(pki, [("u1", None)])
    kc = tmp_path / "u1.kubeconfig"
    kubeconfig.write(kc, "https://127.0.0.1:6443", pki.ca_crt, pki.client_crt("u1"),
                     pki.client_key("u1"), "u1")
    doc = yaml.safe_load(kc.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert doc["users"][0]["user"]["client-certificate-data"]
    assert doc["contexts"][0]["context"]["user"] == "u1"
    assert doc["current-context"] == doc["contexts"][0]["name"]
    assert kc.stat().st_mode & 0o077 == 0


def test_bind_pods_round_robin_keeps_explicit_node_names() -> None:
    docs = [
        {"kind": "Namespace", "metadata": {"name": "demo"}},
        {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": []}},
        {"kind": "Pod", "metadata": {"name": "b"}, "spec": {"containers": []}},
        {"kind": "Pod", "metadata": {"name": "c"}, "spec": {"nodeName": "node-1"}},
        {"kind": "Pod", "metadata": {"name": "d"}, "spec": {}},
    ]
    out = manifests.bind_pods(docs, ["node-1", "node-2"])
    nodes = {d["metadata"]["name"]: d.get("spec", {}).get("nodeName") for d in out}
    assert nodes == {"demo": None, "a": "node-1", "b": "node-2", "c": "node-1", "d": "node-1"}
    assert "nodeName" not in docs[1]["spec"], "the input documents are not modified"


def test_demo_manifests_load_namespace_first() -> None:
    paths = sorted((ROOT / "demo" / "manifests").glob("*.yaml"))
    if not paths:
        pytest.skip("no demo manifests yet")
    docs = manifests.load(paths)
    assert docs[0]["kind"] == "Namespace"
    pods = [d for d in docs if d["kind"] == "Pod"]
    assert pods and all(p["metadata"]["namespace"] == "demo" for p in pods)


def test_rbac_yaml_grants_no_secrets_and_no_cluster_writes() -> None:
    docs = manifests.load([ROOT / "deploy" / "rbac.yaml"])
    cr = next(d for d in docs if d["kind"] == "ClusterRole")
    for rule in cr["rules"]:
        assert "secrets" not in rule["resources"]
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "godebug"
    assert "*" not in str(cr) + str(role)


def test_state_dir_env_overrides_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "go-k8s-debug" / "sandbox"
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "mine"))
    assert default_state_dir() == tmp_path / "mine"


def test_daemon_survives_and_is_stopped_by_pid_file(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    d = procs.start(lay.pids, "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                    lay.logs / "sleeper.log")
    assert d.alive()
    loaded = procs.load(lay.pids)
    assert [(x.name, x.pid) for x in loaded] == [("sleeper", d.pid)]
    assert procs.rss_kib(d.pid)
    t0 = time.monotonic()
    assert procs.stop(lay.pids, loaded[0], timeout=5)
    assert time.monotonic() - t0 < 5, "SIGTERM should stop it without waiting for SIGKILL"
    assert not d.alive()
    assert procs.load(lay.pids) == []


def test_daemon_with_recycled_pid_is_not_alive(tmp_path: Path) -> None:
    # A pid file whose start time does not match the running process is stale.
    d = procs.Daemon("x", 1, 123456789)
    assert not d.alive()


def test_ssh_config_and_known_hosts(tmp_path: Path) -> None:
    lay = Layout(tmp_path)
    sshd.prepare(lay, [("node-1", "10.88.1.1"), ("node-2", "10.88.2.1")])
    cfg = lay.ssh_config.read_text()
    assert "Host node-2\n    HostName 10.88.2.1" in cfg
    assert "StrictHostKeyChecking yes" in cfg
    known = lay.known_hosts.read_text().splitlines()
    assert [k.split()[0] for k in known] == ["node-1,10.88.1.1", "node-2,10.88.2.1"]
    assert known[0].split()[2] != known[1].split()[2], "each node has its own host key"
    assert lay.ssh_key.stat().st_mode & 0o077 == 0
    # The generated client key is a valid OpenSSH key.
    r = subprocess.run(["ssh-keygen", "-y", "-f", str(lay.ssh_key)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == Path(f"{lay.ssh_key}.pub").read_text().split()[1]


def test_cli_kubeconfig_before_up_says_what_to_do(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["kubeconfig", "--state-dir", str(tmp_path)]) == 1
    assert "sandbox up" in capsys.readouterr().err
    assert cli_main(["status", "--state-dir", str(tmp_path)]) == 3
    assert "down" in capsys.readouterr().out


def test_host_claim_one_sandbox_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from demo.sandbox import claim

    monkeypatch.setattr(claim, "CLAIM", tmp_path / "claim")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert claim.take(a) is None
    assert claim.take(a) is None, "the owner may take its own claim again"
    assert claim.take(b) == a.resolve(), "this (live) process owns it for a"
    claim.release(b)
    assert claim.owner() == a.resolve(), "b cannot release a's claim"
    claim.release(a)
    assert claim.owner() is None and not (tmp_path / "claim").exists()
    # A claim whose process and daemons are gone is stale: anyone may take it.
    stale = {"state_dir": str(a.resolve()), "pid": 999999999, "start_time": 1}
    (tmp_path / "claim").write_text(json.dumps(stale))
    assert claim.owner() is None
    assert claim.take(b) is None
    assert claim.owner() == b.resolve()
    claim.release(b)


def test_printable_neutralizes_terminal_escapes() -> None:
    from demo.sandbox.api import printable

    out = printable("ErrImagePull \x1b[31mred\x1b[0m\x07 [bold]x[/bold]")
    assert "\x1b" not in out and "\x07" not in out
    assert out == "ErrImagePull \\x1b[31mred\\x1b[0m\\x07 [bold]x[/bold]"
