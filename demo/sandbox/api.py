"""`Sandbox`: bring the sandbox cluster up, report on it, and take it down.

One state directory holds everything: certificates, kubeconfigs, etcd's data,
ssh keys and configs, logs and the pid files of the daemons, so `sandbox up`
can return while the cluster runs and a later `sandbox down` (another process)
finds and stops it all.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.sandbox import (
    certs,
    claim,
    controlplane,
    kubeconfig,
    manifests,
    netguard,
    procs,
    sshd,
)
from demo.sandbox.layout import Layout, default_state_dir

ROOT = Path(__file__).resolve().parents[2]
RBAC_YAML = ROOT / "deploy" / "rbac.yaml"
DEMO_MANIFESTS = ROOT / "demo" / "manifests"
DEMO_NAMESPACE = "demo"
BRIDGE = "gkd0"
MAX_NODES = 9
# Seconds `up` waits for another sandbox on this host to go down before giving up.
ENV_WAIT = "GO_K8S_DEBUG_SANDBOX_WAIT"


def node_ip(index: int) -> str:
    """The address of node ``index`` (1-based) on the sandbox bridge: 10.88.N.1."""
    return f"10.88.{index}.1"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class SandboxError(RuntimeError):
    """The sandbox could not do what was asked; the message says why and what to do."""


class Sandbox:
    """The sandbox cluster rooted at one state directory.

    Args:
        state_dir: where the cluster's state lives; default $GO_K8S_DEBUG_SANDBOX or
            $XDG_STATE_HOME/go-k8s-debug/sandbox.
        progress: called with one line per step (default: print to stderr).
    """

    def __init__(
        self, state_dir: Path | None = None, progress: Callable[[str], None] | None = None
    ) -> None:
        self.lay = Layout(Path(state_dir) if state_dir else default_state_dir())
        self._progress = progress or _stderr
        self.timings: dict[str, float] = {}

    # -- facts -------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.lay.root

    @property
    def admin_kubeconfig(self) -> Path:
        return self.lay.admin_kubeconfig

    @property
    def restricted_kubeconfig(self) -> Path:
        return self.lay.restricted_kubeconfig

    @property
    def ssh_config(self) -> Path:
        return self.lay.ssh_config

    @property
    def known_hosts(self) -> Path:
        return self.lay.known_hosts

    @property
    def ssh_key(self) -> Path:
        return self.lay.ssh_key

    @property
    def nodes(self) -> list[tuple[str, str]]:
        """(name, IP) of every node of the running cluster."""
        return [tuple(n) for n in self.lay.read_state().get("nodes", [])]  # type: ignore[misc]

    @property
    def api_url(self) -> str:
        url = self.lay.read_state().get("api_url")
        if not url:
            raise SandboxError("the sandbox is not up: run `go-k8s-debug sandbox up`")
        return url

    def api_client(self, restricted: bool = False):
        """A kubernetes ApiClient for the admin (or the restricted user)."""
        from kubernetes import config

        kc = self.restricted_kubeconfig if restricted else self.admin_kubeconfig
        return config.new_client_from_config(config_file=str(kc))

    def is_up(self) -> bool:
        """True when the state says up and etcd and the API server run."""
        alive = {d.name for d in procs.load(self.lay.pids) if d.alive()}
        return bool(self.lay.read_state()) and {"etcd", "apiserver"} <= alive

    # -- up ----------------------------------------------------------------------------

    @contextmanager
    def _phase(self, name: str):
        t0 = time.monotonic()
        yield
        dt = time.monotonic() - t0
        self.timings[name] = dt
        self._progress(f"  {name:<28} {dt:6.2f} s")

    def up(self, nodes: int = 1, demo: bool = False, timeout: float = 180) -> None:
        """Start the cluster and block until it is ready.

        Ready means: the API server answers /readyz, every node is Ready and
        reachable over ssh, and with ``demo`` every pod of namespace ``demo`` Runs.

        Raises:
            SandboxError: a prerequisite is missing or a component failed to start.
            TimeoutError: a component did not become ready within ``timeout``.
        """
        if not 1 <= nodes <= MAX_NODES:
            raise SandboxError(f"--nodes must be between 1 and {MAX_NODES}, not {nodes}")
        if os.geteuid() != 0:
            raise SandboxError(
                "the sandbox needs root (network namespaces, cgroups, sshd on port 22): "
                "run it with sudo or as root"
            )
        dead = [d.name for d in procs.load(self.lay.pids) if not d.alive()]
        if self.is_up() and dead:
            self._progress(f"sandbox processes died ({', '.join(dead)}): starting afresh")
        elif self.is_up():
            have = len(self.nodes)
            if have != nodes:
                raise SandboxError(
                    f"the sandbox in {self.state_dir} is already up with {have} node(s); "
                    "run `go-k8s-debug sandbox down` first to change the node count"
                )
            self._progress(f"sandbox already up in {self.state_dir}")
            if demo:
                self._apply_demo(time.monotonic() + timeout)
            return
        if not sshd.have_sshd():
            raise SandboxError(
                f"{sshd.SSHD} is missing: install the OpenSSH server (make setup does it)"
            )
        binary = controlplane.find_binary()
        self._progress(f"sandbox up: {nodes} node(s), state in {self.state_dir}")
        # The kubernetes client takes 1-3 s to import: do it while etcd starts.
        threading.Thread(target=_preload_kubernetes, daemon=True).start()
        other = self._claim_host()
        deadline = time.monotonic() + timeout
        self.timings = {}
        t_start = time.monotonic()
        if other:
            raise SandboxError(
                f"another sandbox is running on this host (state dir {other}); nodes share "
                "the bridge and node addresses, so stop it first: "
                f"`go-k8s-debug sandbox down --state-dir {other}`"
            )
        try:
            # Anything a crashed earlier run left behind goes first.
            self._teardown(quiet=True)
            if Path(f"/sys/class/net/{BRIDGE}").exists():
                raise SandboxError(
                    f"the bridge {BRIDGE} of an earlier sandbox is still there and no sandbox "
                    f"runs: delete it with `ip link del {BRIDGE}`"
                )
            self._up(binary, nodes, demo, deadline)
        except BaseException:
            self._progress("sandbox up failed; stopping what was started (logs stay in logs/)")
            self._teardown(quiet=True)
            claim.release(self.state_dir)
            raise
        self.timings["total"] = time.monotonic() - t_start
        self._progress(f"  {'total':<28} {self.timings['total']:6.2f} s")
        st = self.lay.read_state()
        st["up_timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        self.lay.write_state(st)

    def _up(self, binary: Path, nodes: int, demo: bool, deadline: float) -> None:
        lay = self.lay
        lay.root.mkdir(parents=True, exist_ok=True)
        for d in (lay.logs, lay.pids, lay.nodes):
            d.mkdir(exist_ok=True)
        node_list = [(f"node-{i}", node_ip(i)) for i in range(1, nodes + 1)]
        etcd_port, peer_port, api_port = (procs.free_port() for _ in range(3))
        api_url = f"https://127.0.0.1:{api_port}"
        pki = certs.PkiPaths(lay.pki)

        with self._phase("certificates + ssh keys"):
            certs.generate(
                pki, [(certs.ADMIN_USER, certs.ADMIN_GROUP), (certs.RESTRICTED_USER, None)]
            )
            for user, path in (
                (certs.ADMIN_USER, lay.admin_kubeconfig),
                (certs.RESTRICTED_USER, lay.restricted_kubeconfig),
            ):
                kubeconfig.write(
                    path, api_url, pki.ca_crt, pki.client_crt(user), pki.client_key(user), user
                )
            sshd.prepare(lay, node_list)

        lay.write_state(
            {
                "api_url": api_url,
                "ports": {"etcd": etcd_port, "etcd_peer": peer_port, "apiserver": api_port},
                "nodes": node_list,
                "binary": str(binary),
                "started": time.time(),
            }
        )
        netguard.install()
        with self._phase("etcd"):
            etcd = controlplane.start_etcd(lay, binary, etcd_port, peer_port)
            controlplane.wait_etcd(etcd, etcd_port, _left(deadline))
        with self._phase("kube-apiserver"):
            api = controlplane.start_apiserver(lay, binary, etcd_port, api_port, pki)
            # The node runtimes import their (slow) client while the API server starts.
            runtimes = [self._start_node(name, ip, deadline) for name, ip in node_list]
            controlplane.wait_apiserver(api, api_url, pki, certs.ADMIN_USER, _left(deadline))
            lay.api_ready.write_text(api_url + "\n")
        with self._phase("RBAC (deploy/rbac.yaml)"):
            manifests.apply(self.api_client(), manifests.load([RBAC_YAML]))
        with self._phase("node runtimes (Ready)"):
            self._wait_nodes_ready(runtimes, node_list, deadline)
        with self._phase("sshd per node"):
            started = [(sshd.start(lay, name), ip) for name, ip in node_list]
            for d, ip in started:
                sshd.wait_listening(d, ip, _left(deadline))
        if demo:
            self._apply_demo(deadline)

    def _claim_host(self) -> Path | None:
        """Claim the host for this sandbox, waiting up to $GO_K8S_DEBUG_SANDBOX_WAIT seconds.

        The wait (default 0) lets test runs of several developers on one machine queue
        up instead of failing.

        Returns:
            None once claimed, else the state dir of the sandbox that still runs.
        """
        try:
            wait = float(os.environ.get(ENV_WAIT, "0") or 0)
        except ValueError:
            wait = 0.0
        deadline = time.monotonic() + wait
        said = False
        while True:
            other = claim.take(self.state_dir)
            if other is None:
                # A node runtime started by hand (not through `up`) holds no claim.
                other = other_sandbox_state_dir(self.state_dir)
                if other is None:
                    return None
                claim.release(self.state_dir)
            if time.monotonic() >= deadline:
                return other
            if not said:
                self._progress(f"  waiting up to {wait:.0f} s for the sandbox in {other} to go")
                said = True
            time.sleep(1)

    def _start_node(self, name: str, ip: str, deadline: float) -> procs.Daemon:
        ndir = self.lay.node_dir(name)
        ndir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "demo.sandbox.node_launcher",
            str(self.lay.api_ready),
            f"{_left(deadline):.0f}",
            "--",
            "run",
            "--kubeconfig",
            str(self.admin_kubeconfig),
            "--node-name",
            name,
            "--node-ip",
            ip,
            "--state-dir",
            str(ndir),
        ]
        return procs.start(self.lay.pids, f"node-{name}", argv, self.lay.logs / f"{name}.log",
                           cwd=ROOT)

    def _wait_nodes_ready(
        self, runtimes: list[procs.Daemon], node_list: list[tuple[str, str]], deadline: float
    ) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        want = {name for name, _ in node_list}
        ready: set[str] = set()
        while True:
            for d in runtimes:
                if not d.alive():
                    raise SandboxError(
                        f"the node runtime {d.name} exited: see logs/{d.name[5:]}.log in "
                        f"{self.state_dir}"
                    )
            ready = {
                n.metadata.name
                for n in core.list_node().items
                if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            }
            # sshd binds the node IP, which the runtime adds to the bridge.
            if want <= ready and all(_is_local_ip(ip) for _, ip in node_list):
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(want - ready)) or "node IPs on the bridge"
                raise TimeoutError(f"nodes not Ready in time: {missing}")
            time.sleep(0.2)

    def _apply_demo(self, deadline: float) -> None:
        from kubernetes import client

        paths = sorted(DEMO_MANIFESTS.glob("*.yaml"))
        if not paths:
            raise SandboxError(f"no demo manifests in {DEMO_MANIFESTS}")
        node_names = [n for n, _ in self.nodes]
        with self._phase("demo pods (create)"):
            docs = manifests.bind_pods(manifests.load(paths), node_names)
            manifests.apply(self.api_client(), docs)
        with self._phase("demo pods (Running)"):
            core = client.CoreV1Api(self.api_client())
            while True:
                pods = core.list_namespaced_pod(DEMO_NAMESPACE).items
                waiting = [p for p in pods if p.status.phase != "Running"]
                if pods and not waiting:
                    return
                if time.monotonic() > deadline:
                    detail = "; ".join(f"{p.metadata.name}: {_why(p)}" for p in waiting)
                    raise TimeoutError(f"demo pods not Running in time: {detail}")
                time.sleep(0.25)

    # -- down --------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop everything and remove what the sandbox made on the host.

        Returns:
            Leftovers found after clean-up (empty when the machine is clean).
        """
        left = self._teardown(quiet=False)
        claim.release(self.state_dir)
        return left

    def _teardown(self, quiet: bool) -> list[str]:
        lay = self.lay
        say = (lambda _m: None) if quiet else self._progress
        daemons = procs.load(lay.pids)

        def tier(d: procs.Daemon) -> int:
            # Node runtimes first (they stop their pods and need the API server to report
            # it), then sshd, then the API server, then etcd.
            if d.name.startswith("node-"):
                return 0
            if d.name.startswith("sshd-"):
                return 1
            return 2 if d.name == "apiserver" else 3

        for level in sorted({tier(d) for d in daemons}):
            group = [d for d in daemons if tier(d) == level]
            was = [d.alive() for d in group]
            t0 = time.monotonic()
            gone = procs.stop_many(lay.pids, group, timeout=30 if level == 0 else 10)
            dt = time.monotonic() - t0
            for d, w, ok in zip(group, was, gone, strict=True):
                if w:
                    say(f"  stopped {d.name} (pid {d.pid}) in {dt:.2f} s" if ok
                        else f"  could not stop {d.name} (pid {d.pid})")
        # The bridge, pod namespaces and kubepods cgroups are host-wide: while another
        # sandbox runs they are its, so neither clean them nor count them as ours.
        host = other_sandbox_state_dir(lay.root) is None
        # A node runtime that stopped cleanly took its pods, veths, cgroups and the bridge
        # with it; the (slower) clean-up command is for what a killed one left behind.
        if leftovers(lay.root, host):
            t0 = time.monotonic()
            self._node_cleanup(say, host)
            if host:
                remove_empty_kubepods()
            say(f"  node clean-up {time.monotonic() - t0:.2f} s")
        shutil.rmtree(lay.etcd_data, ignore_errors=True)
        lay.state_file.unlink(missing_ok=True)
        lay.api_ready.unlink(missing_ok=True)
        if host:
            netguard.remove()
        left = leftovers(lay.root, host)
        if host and netguard.present():
            left.append(f"route blackhole {netguard.SANDBOX_CIDR}")
        for item in left:
            say(f"  leftover: {item}")
        return left

    def _node_cleanup(self, say: Callable[[str], None], host: bool) -> None:
        """Ask the node runtime to remove anything a killed runtime could not."""
        if not lay_has_nodes(self.lay) or not (ROOT / "demo/sandbox/node/__main__.py").exists():
            return
        ndirs = sorted(p for p in self.lay.nodes.iterdir() if p.is_dir())
        for i, ndir in enumerate(ndirs):
            # After the last node, --host removes the bridge and shared kubepods cgroups.
            host_flag = ["--host"] if host and i == len(ndirs) - 1 else []
            r = subprocess.run(
                [sys.executable, "-m", "demo.sandbox.node", "cleanup", "--state-dir", str(ndir),
                 *host_flag],
                capture_output=True, text=True, cwd=ROOT, timeout=60,
            )
            if r.returncode != 0:
                say(f"  node clean-up for {ndir.name} failed: {r.stderr.strip()[-300:]}")

    # -- status ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What runs, where, and how to reach it (a JSON-able dict)."""
        st = self.lay.read_state()
        out: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "up": self.is_up(),
            "api_url": st.get("api_url"),
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "restricted_kubeconfig": str(self.restricted_kubeconfig),
            "ssh_config": str(self.ssh_config),
            "nodes": [{"name": n, "ip": ip} for n, ip in st.get("nodes", [])],
            "up_timings_s": st.get("up_timings_s", {}),
            "processes": [
                {"name": d.name, "pid": d.pid, "alive": d.alive(), "rss_kib": procs.rss_kib(d.pid)}
                for d in procs.load(self.lay.pids)
            ],
        }
        if out["up"]:
            try:
                out.update(self._cluster_status())
            except Exception as e:  # the API may be mid-restart; report, don't crash
                out["api_error"] = str(e)
        return out

    def _cluster_status(self) -> dict[str, Any]:
        from kubernetes import client

        api = self.api_client()
        version = client.VersionApi(api).get_code().git_version
        core = client.CoreV1Api(api)
        ready = {
            n.metadata.name: any(
                c.type == "Ready" and c.status == "True" for c in n.status.conditions or []
            )
            for n in core.list_node().items
        }
        pods = [
            {
                "namespace": p.metadata.namespace,
                "name": p.metadata.name,
                "node": p.spec.node_name,
                "phase": p.status.phase,
                "pod_ip": p.status.pod_ip,
                "restarts": sum(c.restart_count for c in p.status.container_statuses or []),
            }
            for p in core.list_pod_for_all_namespaces().items
        ]
        return {"version": version, "node_ready": ready, "pods": pods}


# Command-line markers of the processes the sandbox starts (with the state dir in argv).
_OUR_COMMANDS = (b"sandbox-control", b"sshd", b"demo.sandbox.node", b"shim.py")


def _ancestors() -> set[int]:
    """This process and its ancestors (a `sudo ... down --state-dir D` is not a leftover)."""
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def _preload_kubernetes() -> None:
    # kubernetes.client loads API classes lazily; CoreV1Api alone is 1.5-6 s of CPU here.
    import kubernetes.config  # noqa: F401
    import kubernetes.utils  # noqa: F401
    from kubernetes.client import CoreV1Api, RbacAuthorizationV1Api  # noqa: F401


def other_sandbox_state_dir(mine: Path | None = None) -> Path | None:
    """The state dir of another sandbox whose node runtime runs on this host, if any.

    Args:
        mine: a state dir that does not count as another sandbox.
    """
    mine_r = mine.resolve() if mine else None
    owner = claim.owner()
    if owner is not None and owner.resolve() != mine_r:
        return owner
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        runtime = b"demo.sandbox.node" in argv or b"demo.sandbox.node_launcher" in argv
        if runtime and b"--state-dir" in argv:
            i = argv.index(b"--state-dir")
            if i + 1 < len(argv):
                # STATE/nodes/node-N -> STATE
                state = Path(argv[i + 1].decode(errors="replace")).parent.parent
                if state.resolve() != mine_r:
                    return state
    return None


def lay_has_nodes(lay: Layout) -> bool:
    return lay.nodes.is_dir() and any(lay.nodes.iterdir())


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


def _is_local_ip(ip: str) -> bool:
    """True when ``ip`` is assigned on this host (binding to it succeeds)."""
    with socket.socket() as s:
        try:
            s.bind((ip, 0))
            return True
        except OSError:
            return False


def _why(pod: Any) -> str:
    """Why a pod is not Running, from its status, safe to print (no control characters)."""
    for cs in pod.status.container_statuses or []:
        w = cs.state.waiting if cs.state else None
        if w and w.reason:
            return printable(f"{w.reason} {w.message or ''}".strip())
    return printable(pod.status.phase or "Pending (no status yet)")


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes among them) shown as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def remove_empty_kubepods() -> None:
    """rmdir every empty cgroup under kubepods, deepest first, then kubepods itself.

    Pod cgroups of a run whose state dir was lost (a killed test run) are orphans no
    node runtime knows about. rmdir refuses a cgroup that still has processes, so
    nothing that runs is touched. Call only when no sandbox runs on the host.
    """
    roots = {kp.resolve() for kp in Path("/sys/fs/cgroup").glob("*/kubepods")}
    roots |= {kp.resolve() for kp in Path("/sys/fs/cgroup").glob("kubepods")}
    for root in roots:
        dirs = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, root]:
            try:
                d.rmdir()
            except OSError:
                pass


def _host_leftovers() -> list[str]:
    """Host-wide traces of a sandbox: the bridge, gkd* links and netns, kubepods cgroups."""
    found: list[str] = []
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        found.append(f"network bridge {BRIDGE}")
    for dev in Path("/sys/class/net").iterdir():
        master = dev / "master"
        if dev.name != BRIDGE and (
            dev.name.startswith("gkd") or (master.exists() and master.resolve().name == BRIDGE)
        ):
            found.append(f"network link {dev.name}")
    netns = Path("/run/netns")
    if netns.is_dir():
        # The node runtime names its pod namespaces gkd-<uid prefix>.
        found += [f"network namespace {p.name}" for p in netns.iterdir()
                  if p.name.startswith("gkd")]
    # v1 controllers (cpu is a symlink to cpu,cpuacct: resolve to list each once), and v2.
    cgroups = {kp.resolve() for kp in Path("/sys/fs/cgroup").glob("*/kubepods")}
    cgroups |= {kp.resolve() for kp in Path("/sys/fs/cgroup").glob("kubepods*")}
    found += [f"cgroup {kp}" for kp in sorted(cgroups)]
    return found


def leftovers(state_root: Path, host: bool = True) -> list[str]:
    """What the sandbox could have left on the host: bridge, netns, mounts, cgroups, daemons.

    Args:
        state_root: the sandbox's state directory (mounts and processes that name it).
        host: also check the host-wide bridge, pod namespaces and kubepods cgroups
            (pass False while another sandbox runs: they are its).
    """
    found: list[str] = []
    if host:
        found += _host_leftovers()
    root = str(state_root.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(root):
            found.append(f"mount {target}")
    needle = root.encode()
    mine = _ancestors()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in mine:
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            # Only what the sandbox starts: a user's console or `ssh -F STATE/ssh_config`
            # also names the state dir, but is theirs to end.
            if needle not in cmd or not any(k in cmd for k in _OUR_COMMANDS):
                continue
            if "\nState:\tZ" not in (p / "status").read_text():
                shown = cmd.replace(b"\0", b" ").decode(errors="replace")[:120]
                found.append(f"process {p.name}: {shown}")
        except OSError:
            continue
    return found
