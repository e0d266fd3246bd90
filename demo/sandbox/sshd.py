"""A real OpenSSH server per node, listening on the node's address, port 22.

A sandbox node is a logical machine sharing the host, so its sshd runs on the
host bound to the node IP (on the node runtime's bridge). The client side gets
what a bastion host would have: a key pair, an ``ssh_config`` with one Host
entry per node and a ``known_hosts`` file with strict host-key checking.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from demo.sandbox import procs
from demo.sandbox.layout import Layout

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")


def _write_keypair(priv: Path) -> str:
    """Write an ed25519 key pair (OpenSSH format) at ``priv`` and ``priv``.pub.

    Returns:
        The public key line ("ssh-ed25519 AAAA...").
    """
    key = ed25519.Ed25519PrivateKey.generate()
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    priv.chmod(0o600)
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    Path(f"{priv}.pub").write_text(pub + "\n")
    return pub


def prepare(lay: Layout, nodes: list[tuple[str, str]]) -> None:
    """Generate host keys, the client key, sshd configs, ssh_config and known_hosts."""
    lay.ssh.mkdir(parents=True, exist_ok=True)
    lay.ssh.chmod(0o700)
    client_pub = _write_keypair(lay.ssh_key)
    authorized = lay.ssh / "authorized_keys"
    authorized.write_text(client_pub + "\n")
    authorized.chmod(0o600)

    known: list[str] = []
    client_cfg = [
        "# ssh config for the go-k8s-debug sandbox nodes: ssh -F THIS_FILE node-1",
    ]
    for name, ip in nodes:
        ndir = lay.ssh / name
        ndir.mkdir(exist_ok=True)
        host_pub = _write_keypair(ndir / "ssh_host_ed25519_key")
        known.append(f"{name},{ip} {host_pub}")
        (ndir / "sshd_config").write_text(
            "\n".join(
                [
                    f"# sshd for sandbox node {name}",
                    f"ListenAddress {ip}:22",
                    f"HostKey {ndir / 'ssh_host_ed25519_key'}",
                    f"PidFile {ndir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    # PAM would consult the host's own login policy; key auth needs none.
                    "UsePAM no",
                    # The state dir may sit under a world-writable /tmp (pytest's tmp_path),
                    # which StrictModes rejects for authorized_keys; the files are 0600 anyway.
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "X11Forwarding no",
                    "PrintMotd no",
                    # A console whose link died half-open (e.g. the bridge went first) is
                    # dropped within a minute, so its session and standby agent end too.
                    "ClientAliveInterval 15",
                    "ClientAliveCountMax 4",
                    "LogLevel INFO",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        client_cfg += [
            "",
            f"Host {name}",
            f"    HostName {ip}",
            "    Port 22",
            "    User root",
            f"    IdentityFile {lay.ssh_key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {lay.known_hosts}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 5",
        ]
    lay.known_hosts.write_text("\n".join(known) + "\n")
    lay.ssh_config.write_text("\n".join(client_cfg) + "\n")


def start(lay: Layout, name: str) -> procs.Daemon:
    """Start the node's sshd in the foreground of its own session (-D), logging to a file."""
    # sshd refuses to start without its privilege-separation directory; a host
    # without a running system sshd may not have it yet.
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    cfg = lay.ssh / name / "sshd_config"
    return procs.start(
        lay.pids, f"sshd-{name}", [SSHD, "-D", "-e", "-f", str(cfg)], lay.logs / f"sshd-{name}.log"
    )


def check_config(lay: Layout, name: str) -> str | None:
    """sshd -t on the node's config: None if valid, else sshd's complaint."""
    import subprocess

    r = subprocess.run(
        [SSHD, "-t", "-f", str(lay.ssh / name / "sshd_config")], capture_output=True, text=True
    )
    return None if r.returncode == 0 else (r.stderr.strip() or r.stdout.strip())


def wait_listening(d: procs.Daemon, ip: str, timeout: float) -> None:
    """Wait until sshd accepts TCP connections on ip:22 and sends its banner."""
    deadline = time.monotonic() + timeout
    while True:
        if not d.alive():
            raise RuntimeError(f"sshd on {ip} exited: see logs/{d.name}.log in the state dir")
        try:
            with socket.create_connection((ip, 22), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd on {ip}:22 did not answer within {timeout:.0f} s")
        time.sleep(0.05)


def have_sshd() -> bool:
    """True when the OpenSSH server binary is installed."""
    return os.access(SSHD, os.X_OK)
