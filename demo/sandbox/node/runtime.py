"""The container runtime seam and the sandbox's own implementation of it.

``PodRuntime`` is shaped like the CRI calls a kubelet makes (RunPodSandbox,
Create+StartContainer, StopContainer, ContainerStatus, RemovePodSandbox), so a
containerd-backed runtime can sit beside ``SandboxRuntime`` later.

``SandboxRuntime`` runs each container as a real process: a shim (``shim.py``)
enters the pod's network namespace, unshares PID/mount/UTS/IPC namespaces, joins
the container cgroups, pivots into the container rootfs and execs the workload.
Everything it creates is recorded under the state directory so a restarted
runtime can adopt running containers and clean up everything it made.

State directory layout::

    ipam.json                                     pod IP allocations
    pods/<uid>/pod.json                           namespace, name, qos, pod IP
    pods/<uid>/rootfs/<container name>/           container root file systems
    pods/<uid>/containers/<id>/{spec.json,record.json,started,exit,log}
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from . import cgroups, network, rootfs
from .images import Image, resolve

SHIM = Path(__file__).with_name("shim.py")


@dataclass
class PodSandboxConfig:
    """What the runtime needs to know about a pod to give it a sandbox."""

    uid: str
    namespace: str
    name: str
    qos: str
    limits: cgroups.Limits = field(default_factory=cgroups.Limits)
    host_pid: bool = False  # spec.hostPID: no PID namespace of its own
    host_network: bool = False  # spec.hostNetwork: no netns; the pod IP is the node IP


@dataclass(frozen=True)
class Mount:
    """A hostPath volume mount: a host path bound into the container."""

    source: str
    target: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    """One container to start: image, argv override parts, environment and limits."""

    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    limits: cgroups.Limits = field(default_factory=cgroups.Limits)
    attempt: int = 0
    mounts: list[Mount] = field(default_factory=list)
    # Recorded only: every sandbox container already runs as root with all
    # capabilities and no seccomp filter, which is what privileged means.
    privileged: bool = False


@dataclass
class ContainerInfo:
    """A container as the runtime sees it."""

    id: str
    name: str
    pod_uid: str
    image: str
    image_id: str
    attempt: int
    state: str  # "created" (shim still setting up) | "running" | "exited"
    pid: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""


class PodRuntime(Protocol):
    """The CRI-shaped seam between the node agent and whatever runs containers."""

    def run_pod_sandbox(self, pod: PodSandboxConfig) -> str:
        """Create (or confirm) the pod's network and cgroup; return the pod IP."""

    def start_container(self, pod: PodSandboxConfig, container: ContainerConfig) -> ContainerInfo:
        """Create and start a container; raise ImagePullError for an unknown image."""

    def container_status(self, pod_uid: str, container_id: str) -> ContainerInfo | None:
        """The container's current state, or None if the runtime has no such container."""

    def stop_container(self, pod_uid: str, container_id: str, grace: float) -> None:
        info = self.container_status(pod_uid, container_id)
        # A container still being set up has no workload PID yet: let the shim finish
        # (or fail), so that nothing it starts afterwards escapes the kill below.
        deadline = time.monotonic() + 15
        while info is not None and info.state == "created" and time.monotonic() < deadline:
            time.sleep(0.05)
            info = self.container_status(pod_uid, container_id)
        if info is None or info.state == "exited":
            return
        self._kill(info, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace)
        while time.monotonic() < deadline:
            info = self.container_status(pod_uid, container_id)
            if info is None or info.state == "exited":
                return
            time.sleep(0.05)
        self._kill(info, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            info = self.container_status(pod_uid, container_id)
            if info is None or info.state == "exited":
                return
            time.sleep(0.02)

    def remove_container(self, pod_uid: str, container_id: str) -> None:
        """Delete a stopped container's cgroup and records."""

    def remove_pod_sandbox(self, pod_uid: str) -> None:
        """Kill whatever is left and remove the pod's network, cgroups and files."""

    def list_containers(self, pod_uid: str | None = None) -> list[ContainerInfo]:
        """Every container the runtime knows about, or one pod's (adoption, pruning)."""

    def pod_meta(self, pod_uid: str) -> dict | None:
        """What the runtime recorded about a pod sandbox: namespace, name, qos, podIP."""

    def list_pod_uids(self) -> list[str]:
        """Every pod the runtime holds resources for."""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, obj: dict) -> None:
    # A temporary name of our own: the shim and other threads write files in the same dir.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def proc_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: identifies a process across PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, ticks: int | None) -> bool:
    now = proc_start_ticks(pid)
    if now is None or (ticks is not None and now != ticks):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class SandboxRuntime:
    """Containers as real processes in their own namespaces and kubelet-style cgroups."""

    def __init__(self, state_dir: Path, node_ip: str, bin_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.pods_dir = self.state_dir / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.node_ip = node_ip
        self.ipam = network.IPAM(self.state_dir, node_ip)
        self.bin_dir = bin_dir
        self._shims: dict[str, subprocess.Popen] = {}

    # -- pod sandboxes -------------------------------------------------------

    def run_pod_sandbox(self, pod: PodSandboxConfig) -> str:
        pdir = self.pods_dir / pod.uid
        pdir.mkdir(parents=True, exist_ok=True)
        pod_ip = self.node_ip if pod.host_network else self.ipam.allocate(pod.uid)
        _write_json(
            pdir / "pod.json",
            {
                "uid": pod.uid,
                "namespace": pod.namespace,
                "name": pod.name,
                "qos": pod.qos,
                "podIP": pod_ip,
                "hostNetwork": pod.host_network,
                "hostPID": pod.host_pid,
            },
        )
        if not pod.host_network and not network.pod_network_ok(pod.uid, pod_ip):
            network.create_pod_network(pod.uid, pod_ip)
        cgroups.create_pod(pod.uid, pod.qos, pod.limits)
        return pod_ip

    def pod_meta(self, pod_uid: str) -> dict | None:
        return _read_json(self.pods_dir / pod_uid / "pod.json")

    def list_pod_uids(self) -> list[str]:
        return sorted(p.name for p in self.pods_dir.iterdir() if p.is_dir())

    def remove_pod_sandbox(self, pod_uid: str) -> None:
        meta = self.pod_meta(pod_uid) or {}
        for info in self.list_containers(pod_uid):
            if info.state != "exited":
                self.stop_container(pod_uid, info.id, grace=0)
        qos = meta.get("qos")
        for q in [qos] if qos else ["Guaranteed", "Burstable", "BestEffort"]:
            cgroups.remove_pod(pod_uid, q)
        network.delete_pod_network(pod_uid)
        self.ipam.release(pod_uid)
        for cid in list(self._shims):
            if (self.pods_dir / pod_uid / "containers" / cid).exists():
                self._reap(cid, wait=1.0)
        shutil.rmtree(self.pods_dir / pod_uid, ignore_errors=True)

    # -- containers ----------------------------------------------------------

    def _cdir(self, pod_uid: str, cid: str) -> Path:
        return self.pods_dir / pod_uid / "containers" / cid

    def resolve_image(self, name: str) -> Image:
        return resolve(name) if self.bin_dir is None else resolve(name, self.bin_dir)

    def start_container(self, pod: PodSandboxConfig, container: ContainerConfig) -> ContainerInfo:
        image = self.resolve_image(container.image)  # raises ImagePullError
        meta = self.pod_meta(pod.uid)
        if meta is None:
            raise RuntimeError(
                f"pod {pod.namespace}/{pod.name} has no sandbox: call run_pod_sandbox first"
            )
        cid = secrets.token_hex(32)
        cdir = self._cdir(pod.uid, cid)
        cdir.mkdir(parents=True)
        root = self.pods_dir / pod.uid / "rootfs" / container.name
        rootfs.build(root, image, pod.name, meta["podIP"], pod.namespace)
        cg = cgroups.create_container(pod.uid, pod.qos, cid, container.limits)
        argv = list(container.command or [image.container_path]) + list(container.args)
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": pod.name,
            **container.env,
        }
        mounts = [Mount(p, p, read_only=True) for p in image.host_mounts] + container.mounts
        spec = {
            "rootfs": str(root),
            "netns": None if meta.get("hostNetwork") else network.netns_path(pod.uid),
            "hostPID": bool(meta.get("hostPID")),
            "privileged": container.privileged,
            "mounts": [
                {"source": m.source, "target": m.target, "readOnly": m.read_only} for m in mounts
            ],
            "cgroups": [str(p) for p in cg],
            "hostname": pod.name,
            "argv": argv,
            "env": env,
            "cwd": container.working_dir or "/",
            "log": str(cdir / "log"),
        }
        _write_json(cdir / "spec.json", spec)
        record = {
            "id": cid,
            "name": container.name,
            "podUID": pod.uid,
            "qos": pod.qos,
            "image": container.image,
            "imageID": image.image_id,
            "attempt": container.attempt,
            "created": time.time(),
        }
        _write_json(cdir / "record.json", record)
        with open(cdir / "shim.log", "ab") as log:
            shim = subprocess.Popen(
                # -I -S: the shim needs only the standard library, and skipping site
                # start-up keeps container starts fast on a loaded machine.
                [sys.executable, "-I", "-S", str(SHIM), str(cdir / "spec.json")],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                cwd=str(cdir),
            )
        self._shims[cid] = shim
        record["shimPID"] = shim.pid
        record["shimStart"] = proc_start_ticks(shim.pid)
        _write_json(cdir / "record.json", record)
        # Usually a few ms; if the machine is slow the container is reported as
        # "created" and picked up as running by a later container_status().
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            started = _read_json(cdir / "started")
            if started:
                record["pid"] = started["pid"]
                record["pidStart"] = proc_start_ticks(started["pid"])
                break
            if (cdir / "exit").exists() or shim.poll() is not None:
                break
            time.sleep(0.01)
        _write_json(cdir / "record.json", record)
        info = self.container_status(pod.uid, cid)
        assert info is not None
        return info

    def container_status(self, pod_uid: str, container_id: str) -> ContainerInfo | None:
        cdir = self._cdir(pod_uid, container_id)
        rec = _read_json(cdir / "record.json")
        if rec is None:
            return None
        started = _read_json(cdir / "started") or {}
        info = ContainerInfo(
            id=container_id,
            name=rec["name"],
            pod_uid=pod_uid,
            image=rec["image"],
            image_id=rec["imageID"],
            attempt=rec.get("attempt", 0),
            state="running",
            pid=started.get("pid", 0),
            started_at=started.get("startedAt", 0.0),
        )
        ex = _read_json(cdir / "exit")
        self._reap(container_id)
        if info.pid and "pidStart" not in rec:
            rec["pidStart"] = proc_start_ticks(info.pid)
            _write_json(cdir / "record.json", rec)
        if ex is None and info.pid and _alive(info.pid, rec.get("pidStart")):
            return info
        if ex is None and _alive(rec.get("shimPID", 0), rec.get("shimStart")):
            # Not started yet, or just exited and the shim is writing its exit record.
            info.state = "running" if info.pid else "created"
            return info
        if ex is None:
            # Shim and container are gone without an exit record (e.g. killed together).
            ex = _read_json(cdir / "exit") or {
                "exitCode": 255,
                "reason": "Unknown",
                "message": "the container's shim disappeared",
                "finishedAt": time.time(),
            }
            _write_json(cdir / "exit", ex)
        info.state = "exited"
        if not rec.get("cgroupRemoved"):
            if ex.get("exitCode") == 137 and cgroups.oom_killed(
                pod_uid, rec.get("qos", ""), container_id
            ):
                ex.update(reason="OOMKilled")
                info.reason = "OOMKilled"
                _write_json(cdir / "exit", ex)
            # As containerd deletes the task: the dead container's cgroup goes, its record stays.
            cgroups.remove_container(pod_uid, rec.get("qos", "BestEffort"), container_id)
            rec["cgroupRemoved"] = True
            _write_json(cdir / "record.json", rec)
        info.exit_code = ex.get("exitCode", 255)
        info.reason = ex.get("reason", "Error")
        info.message = ex.get("message", "")
        info.finished_at = ex.get("finishedAt", 0.0)
        if not info.started_at:
            info.started_at = info.finished_at
        return info

    def container_spec(self, pod_uid: str, container_id: str) -> dict | None:
        """What the shim was told: rootfs, cgroups, env, mounts (for exec)."""
        return _read_json(self._cdir(pod_uid, container_id) / "spec.json")

    def find_running(self, namespace: str, name: str, container: str) -> ContainerInfo | None:
        """The running container ``container`` of pod ``namespace/name``, if any."""
        for uid in self.list_pod_uids():
            meta = self.pod_meta(uid) or {}
            if (meta.get("namespace"), meta.get("name")) != (namespace, name):
                continue
            for info in self.list_containers(uid):
                if info.name == container and info.state == "running" and info.pid:
                    return info
        return None

    def _reap(self, cid: str, wait: float = 0.0) -> None:
        shim = self._shims.get(cid)
        if shim is None:
            return
        try:
            shim.wait(timeout=wait) if wait else shim.poll()
        except subprocess.TimeoutExpired:
            return
        if shim.returncode is not None:
            del self._shims[cid]

    def _kill(self, info: ContainerInfo, sig: int) -> None:
        rec = _read_json(self._cdir(info.pod_uid, info.id) / "record.json") or {}
        if info.pid and _alive(info.pid, rec.get("pidStart")):
            try:
                os.kill(info.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            for h in cgroups.hierarchies():
                cgroups.kill_all(
                    h / cgroups.pod_relpath(info.pod_uid, rec.get("qos", "BestEffort")) / info.id
                )

    def stop_container(self, pod_uid: str, container_id: str, grace: float) -> None:
        info = self.container_status(pod_uid, container_id)
        if info is None or info.state != "running":
            return
        self._kill(info, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace)
        while time.monotonic() < deadline:
            info = self.container_status(pod_uid, container_id)
            if info is None or info.state != "running":
                return
            time.sleep(0.05)
        self._kill(info, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            info = self.container_status(pod_uid, container_id)
            if info is None or info.state != "running":
                return
            time.sleep(0.02)

    def remove_container(self, pod_uid: str, container_id: str) -> None:
        rec = _read_json(self._cdir(pod_uid, container_id) / "record.json") or {}
        cgroups.remove_container(pod_uid, rec.get("qos", "BestEffort"), container_id)
        self._reap(container_id, wait=1.0)
        shutil.rmtree(self._cdir(pod_uid, container_id), ignore_errors=True)

    def list_containers(self, pod_uid: str | None = None) -> list[ContainerInfo]:
        uids = [pod_uid] if pod_uid else self.list_pod_uids()
        out = []
        for uid in uids:
            cdirs = self.pods_dir / uid / "containers"
            if not cdirs.is_dir():
                continue
            for c in cdirs.iterdir():
                info = self.container_status(uid, c.name)
                if info is not None:
                    out.append(info)
        return sorted(out, key=lambda i: (i.pod_uid, i.name, i.attempt))

    # -- whole node ----------------------------------------------------------

    def remove_all(self) -> None:
        """Remove every pod sandbox this runtime holds (node shutdown / cleanup)."""
        for uid in self.list_pod_uids():
            self.remove_pod_sandbox(uid)


def info_dict(info: ContainerInfo) -> dict:
    return asdict(info)
