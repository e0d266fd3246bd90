"""Transports against real processes: a real sshd on loopback, real subprocesses.

The agent here is a stand-in (a few lines of stdlib Python that speak frames)
because these tests are about the link, not the agent; tests/test_session*.py
run the real agent over the same transports on the sandbox.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import need

from bpf.schema import decode_frame, encode, make_command
from tui.sources.base import ContainerInfo, PodInfo
from tui.transports.base import AgentTarget, TransportError
from tui.transports.bundle import AgentBundle, agent_bundle
from tui.transports.local import LocalTransport
from tui.transports.ssh import (
    _POOL,
    SSHOptions,
    SSHTransport,
    _LoopThread,
    close_connections,
    config_names_host,
    open_connections,
)

STANDIN_AGENT = r"""
import json, os, sys, time
def out(kind, **f):
    f.update(v=1, t=time.time_ns(), kind=kind)
    sys.stdout.write(json.dumps(f) + "\n"); sys.stdout.flush()
argv, standby = sys.argv[1:], sys.argv[1:] == ["--standby"]
if standby:  # started ahead: the real arguments come as one JSON line
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    argv = json.loads(line)
out("hello", agent="standin", host=os.uname().nodename, kernel="", target={"argv": argv},
    collectors={}, clock_offset_ns=0, uid=os.getuid(), pid=os.getpid(), standby=standby,
    flags=[sys.flags.isolated])
sys.stdout.write("this line is not a frame\n"); sys.stdout.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get("cmd") == "stop":
        break
    out("log", level="info", msg="got " + cmd["cmd"])
out("bye", reason="stdin closed", detached=0)
"""

CID = "ab" * 32


def standin_bundle(standby: bool = False) -> AgentBundle:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("__main__.py", (1980, 1, 1, 0, 0, 0)), STANDIN_AGENT)
    data = buf.getvalue()
    return AgentBundle(data, hashlib.sha256(data).hexdigest(), standby=standby)


def target(node: str | None = "node-x", addr: str | None = None) -> AgentTarget:
    c = ContainerInfo(name="app", image="i", container_id="containerd://" + CID)
    pod = PodInfo(
        namespace="demo", name="leak", uid="uid-123", status="Running", ready="1/1",
        restarts=0, created=0.0, node=node, cpu_limit=None, pprof_port=6060, containers=(c,),
    )  # fmt: skip
    return AgentTarget(pod=pod, container=c, container_id=CID, node=node, node_address=addr)


def read_frames(link, n: int, timeout: float = 10.0) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    it = link.lines()
    for line in it:
        try:
            out.append(decode_frame(line))
        except Exception:  # noqa: BLE001 - the stand-in writes one bad line on purpose
            out.append({"kind": "<bad>", "raw": line})
        if len(out) >= n or time.monotonic() > deadline:
            break
    return out


# ---------------------------------------------------------------- a real sshd on loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keypair(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, root):
    need(shutil.which("sshd") is not None or os.path.exists("/usr/sbin/sshd"), "needs sshd")
    d = tmp_path_factory.mktemp("sshd")
    port = _free_port()
    host_pub = _keypair(d / "host_key")
    client_pub = _keypair(d / "client_key")
    (d / "authorized_keys").write_text(client_pub + "\n")
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "AllowTcpForwarding yes\nSubsystem sftp internal-sftp\n"
    )
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (d / "ssh_config").write_text(
        f"Host testnode\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {d / 'client_key'}\n  UserKnownHostsFile {d / 'known_hosts'}\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "wb"),
    )  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield {"dir": d, "port": port, "config": str(d / "ssh_config"), "host_pub": host_pub}
    close_connections()  # the connections kept for reuse, and their standby agents
    proc.terminate()
    proc.wait(timeout=10)


def test_config_host_matching(tmp_path):
    cfg = tmp_path / "c"
    cfg.write_text("Host node-* !node-9\n  User x\nHost *\n  User y\n")
    assert config_names_host([str(cfg)], "node-1")
    assert not config_names_host([str(cfg)], "node-9")
    assert not config_names_host([str(cfg)], "other")  # `Host *` alone does not count


def test_ssh_runs_agent_via_config_host_entry(sshd):
    t = SSHTransport(SSHOptions(config=[sshd["config"]]), bundle=standin_bundle())
    link = t.start(target(node="testnode"))
    try:
        assert link.description.startswith("ssh testnode")
        hello, bad = read_frames(link, 2)
        assert hello["kind"] == "hello" and hello["uid"] == 0
        assert hello["target"]["argv"] == [
            "--pod-uid", "uid-123", "--container-id", CID, "--container", "app",
            "--pprof-port", "6060",
        ]  # fmt: skip
        assert bad["kind"] == "<bad>"  # passed through raw: the session counts it
        link.write(encode(make_command("ping", id="p1")).encode())
        (echo,) = read_frames(link, 1)
        assert echo["msg"] == "got ping"
    finally:
        link.close()
    rest = [decode_frame(x) for x in link.lines()]
    assert [f["kind"] for f in rest] == ["bye"]  # closing stdin made the agent exit cleanly
    assert "exited with status 0" in link.end_reason()


def test_ssh_bundle_is_cached_by_content_hash(sshd):
    t = SSHTransport(SSHOptions(config=[sshd["config"]]), bundle=standin_bundle())
    for i in range(3):
        t0 = time.monotonic()
        link = t.start(target(node="testnode"))
        assert read_frames(link, 1)[0]["kind"] == "hello"
        print(f"\nssh attach {i}: first frame after {time.monotonic() - t0:.2f} s {t.last_timings}")
        link.close()
    assert t.last_timings["cached"] == 1.0
    assert t.last_timings["connect_s"] < 3 and "start_s" in t.last_timings


def _accepted(sshd) -> int:
    return (sshd["dir"] / "sshd.log").read_text().count("Accepted publickey")


def test_ssh_reuses_the_connection_and_a_standby_agent(sshd):
    close_connections()
    opts = SSHOptions(config=[sshd["config"]])
    b = standin_bundle(standby=True)
    t = SSHTransport(opts, bundle=b)
    logins = _accepted(sshd)
    link = t.start(target(node="testnode"))
    first = read_frames(link, 1)[0]
    assert first["standby"] is False and first["flags"] == [1]  # python -I: env can't steer it
    assert t.last_timings["reused"] == 0.0
    link.close()
    assert open_connections() == 1  # kept for the next attach
    lease = _POOL.current(t._pool_key("testnode"))
    deadline = time.monotonic() + 20
    while lease.standby is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lease.standby is not None, "no standby agent was started after the attach"
    # The console makes a new transport per attach; the connection and standby are shared.
    t2 = SSHTransport(opts, bundle=b)
    link = t2.start(target(node="testnode"))
    try:
        hello = read_frames(link, 1)[0]
        assert t2.last_timings["reused"] == 1.0 and t2.last_timings["standby"] == 1.0
        assert hello["standby"] is True and hello["pid"] != first["pid"]
        assert hello["target"]["argv"] == [
            "--pod-uid", "uid-123", "--container-id", CID, "--container", "app",
            "--pprof-port", "6060",
        ]  # fmt: skip
        link.write(encode(make_command("ping", id="p2")).encode())
        bad, echo = read_frames(link, 2)
        assert echo["msg"] == "got ping"  # the command stream after the argument line
    finally:
        link.close()
    assert [decode_frame(x)["kind"] for x in link.lines()] == ["bye"]
    assert _accepted(sshd) - logins == 1  # one SSH login for both attaches
    # A connection that died is not handed out again: the next attach logs in anew.
    lease = _POOL.current(t._pool_key("testnode"))
    _LoopThread.get().loop.call_soon_threadsafe(lease.conn.abort)
    deadline = time.monotonic() + 10
    while lease.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    link = SSHTransport(opts, bundle=b).start(target(node="testnode"))
    try:
        assert read_frames(link, 1)[0]["kind"] == "hello"
    finally:
        link.close()
    assert _accepted(sshd) - logins == 2
    close_connections()
    assert open_connections() == 0


def test_ssh_prepare_has_an_agent_waiting_before_the_attach(sshd):
    close_connections()
    opts = SSHOptions(config=[sshd["config"]])
    b = standin_bundle(standby=True)
    SSHTransport(opts, bundle=b).start(target(node="testnode")).close()  # caches the bundle
    close_connections()
    logins = _accepted(sshd)
    SSHTransport(opts, bundle=b).prepare(target(node="testnode"))  # what enter will need
    assert open_connections() == 1 and _accepted(sshd) - logins == 1
    t = SSHTransport(opts, bundle=b)
    link = t.start(target(node="testnode"))
    try:
        assert read_frames(link, 1)[0]["standby"] is True
        assert t.last_timings["reused"] == 1.0 and t.last_timings["standby"] == 1.0
    finally:
        link.close()
    assert _accepted(sshd) - logins == 1
    close_connections()


def test_ssh_by_node_address_with_flags(sshd):
    d = sshd["dir"]
    opts = SSHOptions(
        config=[str(d / "empty_config")], user="root", key=str(d / "client_key"),
        known_hosts=str(d / "known_hosts"),
    )  # fmt: skip
    (d / "empty_config").write_text(f"Host 127.0.0.1\n  Port {sshd['port']}\n")
    link = SSHTransport(opts, bundle=standin_bundle()).start(target(node="n1", addr="127.0.0.1"))
    try:
        assert read_frames(link, 1)[0]["kind"] == "hello"
    finally:
        link.close()


def test_ssh_through_jump_host(sshd):
    d = sshd["dir"]
    opts = SSHOptions(config=[sshd["config"]], jump="testnode")
    link = SSHTransport(opts, bundle=standin_bundle()).start(target(node="testnode"))
    try:
        assert read_frames(link, 1)[0]["kind"] == "hello"
    finally:
        link.close()
    assert (d / "sshd.log").read_text().count("Accepted publickey") >= 2


def test_ssh_refuses_wrong_host_key(sshd, tmp_path):
    wrong = tmp_path / "known_hosts"
    other = _keypair(tmp_path / "other")
    wrong.write_text(f"[127.0.0.1]:{sshd['port']} {other}\n")
    opts = SSHOptions(config=[sshd["config"]], known_hosts=str(wrong))
    with pytest.raises(TransportError) as ei:
        SSHTransport(opts, bundle=standin_bundle()).start(target(node="testnode"))
    msg = str(ei.value)
    assert "host key is not trusted" in msg and "ssh-keygen -R" in msg
    assert ei.value.retry is False


def test_ssh_refuses_unknown_host(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    opts = SSHOptions(config=[sshd["config"]], known_hosts=str(empty))
    with pytest.raises(TransportError, match="not trusted"):
        SSHTransport(opts, bundle=standin_bundle()).start(target(node="testnode"))


def test_ssh_wrong_key_is_permission_denied(sshd, tmp_path):
    _keypair(tmp_path / "k")
    opts = SSHOptions(config=[sshd["config"]], key=str(tmp_path / "k"))
    with pytest.raises(TransportError, match="permission denied") as ei:
        SSHTransport(opts, bundle=standin_bundle()).start(target(node="testnode"))
    assert ei.value.retry is False


def test_ssh_nothing_listening_is_retryable(tmp_path):
    cfg = tmp_path / "c"
    cfg.write_text(f"Host dead\n  HostName 127.0.0.1\n  Port {_free_port()}\n")
    with pytest.raises(TransportError, match="Could not connect to dead") as ei:
        SSHTransport(SSHOptions(config=[str(cfg)]), bundle=standin_bundle()).start(target("dead"))
    assert ei.value.retry is True


# ---------------------------------------------------------------- local


def test_local_runs_agent_command(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text(STANDIN_AGENT)
    link = LocalTransport(command=[sys.executable, str(script)]).start(target())
    try:
        hello = read_frames(link, 1)[0]
        assert hello["target"]["argv"][3] == CID
        link.write(encode(make_command("stop")).encode())
        rest = [json.loads(x) for x in link.lines() if x.startswith(b"{")]
        assert rest[-1]["kind"] == "bye"
    finally:
        link.close()
    assert "exited with status 0" in link.end_reason()


def test_local_reports_agent_death_with_stderr(tmp_path):
    script = tmp_path / "agent.py"
    script.write_text("import sys; sys.stderr.write('no bcc here\\n'); sys.exit(3)")
    link = LocalTransport(command=[sys.executable, str(script)]).start(target())
    assert list(link.lines()) == []
    link.close()
    assert link.end_reason() == "the agent exited with status 3: no bcc here"


def test_local_needs_root_says_how(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(TransportError, match="needs root: run the console with sudo"):
        LocalTransport().start(target())


def test_agent_bundle_is_a_runnable_zipapp(tmp_path):
    b = agent_bundle()
    assert b.sha256 == hashlib.sha256(b.data).hexdigest()
    names = zipfile.ZipFile(io.BytesIO(b.data)).namelist()
    assert "__main__.py" in names and "bpf/schema.py" in names
    assert agent_bundle().sha256 == b.sha256  # deterministic: the node-side cache hits


def test_is_local_address():
    from tui.transports.local import is_local_address

    assert is_local_address("127.0.0.1")
    # TEST-NET-3 (RFC 5737) is never assigned here; nothing is sent, only bind() is tried.
    assert not is_local_address("203.0.113.7")
