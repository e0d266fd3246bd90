"""The sandbox node's kubelet API: v4 channel framing, exec through the real API server,
and that nobody but the API server may call it."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path

import pytest
from conftest import need

from demo.sandbox.node import images
from demo.sandbox.node.kubelet import host_path_mounts
from demo.sandbox.node.kubelet_api import (
    ERROR,
    STDOUT,
    channel_message,
    exec_argv,
    exit_status,
    parse_channel_message,
)
from demo.sandbox.node.runtime import Mount

# ---------------------------------------------------------------- pure pieces


def test_channel_framing_round_trips() -> None:
    for ch, data in [(0, b""), (STDOUT, b"line\n"), (ERROR, b'{"status":"Success"}'),
                     (2, bytes(range(256)))]:  # fmt: skip
        msg = channel_message(ch, data)
        assert msg[0] == ch and parse_channel_message(msg) == (ch, data)
    assert parse_channel_message(b"") == (-1, b"")


def test_exit_status_is_the_kubelets_metav1_status() -> None:
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    st = exit_status(3)
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_exec_enters_the_containers_namespaces_and_root() -> None:
    argv = exec_argv(1234, ["python3", "-c", "print(1)"])
    assert argv[:2] == ["nsenter", "--target=1234"]
    for flag in ("--mount", "--pid", "--net", "--ipc", "--uts", "--root", "--wd"):
        assert flag in argv
    assert argv[argv.index("--") + 1 :] == ["python3", "-c", "print(1)"]


def test_host_path_mounts_keep_only_host_path_volumes() -> None:
    spec = {"volumes": [{"name": "sys", "hostPath": {"path": "/sys"}},
                        {"name": "scratch", "emptyDir": {}}]}  # fmt: skip
    c = {"volumeMounts": [{"name": "sys", "mountPath": "/host/sys", "readOnly": True},
                          {"name": "scratch", "mountPath": "/scratch"}]}  # fmt: skip
    assert host_path_mounts(spec, c) == [Mount("/sys", "/host/sys", True)]


def test_python3_bcc_image_is_the_hosts_python_with_usr_mounted() -> None:
    if not images.BCC_PACKAGE.is_dir():
        with pytest.raises(images.ImagePullError, match="python3-bpfcc"):
            images.resolve("sandbox.local/python3-bcc")
        return
    img = images.resolve("sandbox.local/python3-bcc:latest")
    assert img.container_path == "/usr/bin/python3" and "/usr" in img.host_mounts
    assert img.image_id.startswith("sandbox.local/python3-bcc@sha256:")


# ---------------------------------------------------------------- on the sandbox


@pytest.mark.sandbox
@pytest.mark.slow
def test_exec_through_the_api_server_carries_stdin_stdout_and_exit_code(sandbox) -> None:
    """As the admin (the restricted user may exec only in godebug): busybox in demo/not-go."""
    from kubernetes import client
    from kubernetes.stream import stream

    core = client.CoreV1Api(sandbox.api_client())
    ws = stream(
        core.connect_get_namespaced_pod_exec, "not-go", "demo", container="app",
        command=["/bin/busybox", "sh", "-c", "read x; echo got:$x; hostname; exit 3"],
        stdin=True, stdout=True, stderr=True, tty=False, binary=True, _preload_content=False,
        _headers={"sec-websocket-protocol": "v4.channel.k8s.io"},
    )  # fmt: skip
    try:
        ws.write_stdin(b"hello\n")
        ws.run_forever(timeout=20)
        out = ws.read_channel(STDOUT)
        status = json.loads(ws.read_channel(ERROR))
    finally:
        ws.close()
    # The command ran in the pod's UTS namespace (its hostname) and got our stdin.
    assert out == b"got:hello\nnot-go\n", out
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"][0]["message"] == "3"


def _kubelet_get(sandbox, cert: tuple[Path, Path] | None) -> int:
    from demo.sandbox import certs

    pki = certs.PkiPaths(sandbox.state_dir / "pki")
    ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    name, ip = sandbox.nodes[0]
    conn = http.client.HTTPSConnection(ip, 10250, context=ctx, timeout=10)
    try:
        conn.request("GET", "/exec/demo/not-go/app?command=id&output=1")
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.sandbox
def test_only_the_api_server_may_call_the_kubelet_api(sandbox) -> None:
    from demo.sandbox import certs

    need(bool(sandbox.nodes), "needs a sandbox node")
    pki = certs.PkiPaths(sandbox.state_dir / "pki")
    # The serving certificate verifies against the sandbox CA for the node IP, and a
    # client without a certificate is refused during the TLS handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        _kubelet_get(sandbox, None)
    # Users whose certificates the same CA signed are still refused: no RBAC bypass.
    for user in (certs.RESTRICTED_USER, certs.ADMIN_USER):
        assert _kubelet_get(sandbox, (pki.client_crt(user), pki.client_key(user))) == 403
    # The API server's own identity gets past authentication (400: not a websocket).
    api = (pki.client_crt(certs.KUBELET_CLIENT_USER), pki.client_key(certs.KUBELET_CLIENT_USER))
    assert _kubelet_get(sandbox, api) == 400
