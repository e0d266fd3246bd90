"""Pod networking: one host bridge, a network namespace and a veth pair per pod.

The bridge ``gkd0`` holds the gateway 10.88.0.1/16 and every node's address
(10.88.N.1/16); each pod gets 10.88.N.k/16 on ``eth0`` in its own namespace
``gkd-<uid prefix>``, with a default route via the gateway. The API server on the
host reaches pod IPs directly over the bridge, which is what the pod proxy needs.
All of it is driven through iproute2 (``ip``), the tool a CNI bridge plugin user
would reach for when debugging, so what the sandbox does can be replayed by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

BRIDGE = "gkd0"
GATEWAY = "10.88.0.1"
PREFIX = 16
POD_CIDR = ipaddress.ip_network("10.88.0.0/16")
HOST_DIR = Path("/run/gkd-sandbox")


class NetworkError(RuntimeError):
    """An ip(8) command failed."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip ARGS``; raise NetworkError with its stderr when ``check`` and it fails."""
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialize bridge set-up and tear-down between the nodes on this host."""
    HOST_DIR.mkdir(parents=True, exist_ok=True)
    with open(HOST_DIR / "net.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def link_exists(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def bridge_addresses() -> list[str]:
    """IPv4 addresses on the bridge (empty when it does not exist)."""
    r = ip("-j", "addr", "show", "dev", BRIDGE, check=False)
    if r.returncode != 0:
        return []
    out = []
    for link in json.loads(r.stdout or "[]"):
        out += [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
    return out


def ensure_bridge(node_ip: str) -> None:
    """Create the bridge with the gateway address if missing; add ``node_ip`` to it."""
    if ipaddress.ip_address(node_ip) not in POD_CIDR:
        raise NetworkError(
            f"node IP {node_ip} is outside {POD_CIDR}; use 10.88.N.1 with N in 1..254"
        )
    with host_lock():
        if not link_exists(BRIDGE):
            ip("link", "add", BRIDGE, "type", "bridge")
        addrs = bridge_addresses()
        if GATEWAY not in addrs:
            ip("addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
        if node_ip not in addrs:
            ip("addr", "add", f"{node_ip}/{PREFIX}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")


def release_node(node_ip: str) -> bool:
    """Take ``node_ip`` off the bridge; delete the bridge if no node is left (then True)."""
    with host_lock():
        if not link_exists(BRIDGE):
            return True
        ip("addr", "del", f"{node_ip}/{PREFIX}", "dev", BRIDGE, check=False)
        if set(bridge_addresses()) <= {GATEWAY}:
            ip("link", "del", BRIDGE, check=False)
            return True
        return False


def teardown_bridge() -> None:
    """Delete the bridge whatever is still on it (full sandbox tear-down)."""
    with host_lock():
        if link_exists(BRIDGE):
            ip("link", "del", BRIDGE, check=False)


def netns_name(uid: str) -> str:
    return "gkd-" + uid.replace("-", "")[:12]


def veth_name(uid: str) -> str:
    # Interface names are limited to 15 bytes.
    return "gkdv" + uid.replace("-", "")[:11]


def netns_path(uid: str) -> str:
    return f"/run/netns/{netns_name(uid)}"


def netns_exists(uid: str) -> bool:
    return os.path.exists(netns_path(uid))


def create_pod_network(uid: str, pod_ip: str) -> None:
    """Create the pod's namespace, veth pair (eth0 inside), address, loopback and default route."""
    ns, veth = netns_name(uid), veth_name(uid)
    delete_pod_network(uid)
    ip("netns", "add", ns)
    try:
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", veth, "master", BRIDGE, "up")
        ip("-n", ns, "addr", "add", f"{pod_ip}/{PREFIX}", "dev", "eth0")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", GATEWAY)
    except NetworkError:
        delete_pod_network(uid)
        raise


def pod_network_ok(uid: str, pod_ip: str) -> bool:
    """True when the namespace exists with ``pod_ip`` on eth0 and the host veth is on the bridge."""
    if not netns_exists(uid) or not link_exists(veth_name(uid)):
        return False
    r = ip("-n", netns_name(uid), "-j", "addr", "show", "dev", "eth0", check=False)
    return r.returncode == 0 and f'"{pod_ip}"' in r.stdout


def delete_pod_network(uid: str) -> None:
    """Delete the pod's namespace (which takes eth0 and so the veth pair with it)."""
    ns, veth = netns_name(uid), veth_name(uid)
    if os.path.exists(f"/run/netns/{ns}"):
        ip("netns", "del", ns, check=False)
    if link_exists(veth):
        ip("link", "del", veth, check=False)


class IPAM:
    """Per-node pod address allocation (10.88.N.2 … 10.88.N.254), persisted in the state dir."""

    def __init__(self, state_dir: Path, node_ip: str) -> None:
        self.path = Path(state_dir) / "ipam.json"
        self.base = node_ip.rsplit(".", 1)[0]
        self.node_ip = node_ip

    def _load(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _save(self, table: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(table, indent=1))
        tmp.replace(self.path)

    def allocate(self, uid: str) -> str:
        """The pod's address: the one it already has, else the lowest free one."""
        table = self._load()
        if uid in table:
            return table[uid]
        used = set(table.values())
        for k in range(2, 255):
            cand = f"{self.base}.{k}"
            if cand not in used and cand != self.node_ip:
                table[uid] = cand
                self._save(table)
                return cand
        raise NetworkError(f"no free pod address left in {self.base}.0/24 on this node")

    def release(self, uid: str) -> None:
        table = self._load()
        if table.pop(uid, None) is not None:
            self._save(table)

    def allocated(self) -> dict[str, str]:
        return self._load()
