"""The kubelet stand-in: registers a Node, runs the pods bound to it, reports their status.

It watches pods with ``spec.nodeName`` equal to its node (list, then watch from the
list's resourceVersion, re-list on 410 Gone), and reconciles every pod about twice
a second through a ``PodRuntime``: start containers, notice exits, restart per
``restartPolicy`` with a CrashLoopBackOff-style back-off, stop and clean up deleted
pods and then finalize their deletion, as a kubelet does.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from . import podstatus
from .images import ImagePullError
from .runtime import ContainerConfig, ContainerInfo, Mount, PodRuntime, PodSandboxConfig

log = logging.getLogger("gkd.node")

KUBELET_VERSION = "v1.34.4"
RUNTIME_VERSION = "gkd-sandbox://0.1"
HEARTBEAT_S = 10.0
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
# A container that ran this long before it exited starts its back-off afresh.
BACKOFF_RESET_AFTER_S = 60.0
MAX_GRACE_S = 30.0
MERGE_PATCH = "application/merge-patch+json"


@dataclass
class ContainerTrack:
    """What the node remembers about one container of a pod across its restarts."""

    name: str
    current: ContainerInfo | None = None
    restart_count: int = 0
    last_terminated: dict | None = None
    exit_seen: str = ""  # id of the exited container already accounted for
    backoff_s: float = BACKOFF_START_S
    backoff_until: float = 0.0
    waiting: tuple[str, str] | None = None
    pull_failures: int = 0


@dataclass
class PodTrack:
    """The node's record of one pod it runs."""

    uid: str
    namespace: str
    name: str
    pod_ip: str = ""
    containers: dict[str, ContainerTrack] = field(default_factory=dict)
    last_status: str = ""
    terminating: bool = False
    sandbox_ready: bool = False


def _terminated(info: ContainerInfo) -> dict:
    t: dict[str, Any] = {
        "exitCode": info.exit_code,
        "reason": info.reason or ("Completed" if info.exit_code == 0 else "Error"),
        "startedAt": podstatus.rfc3339(info.started_at),
        "finishedAt": podstatus.rfc3339(info.finished_at),
        "containerID": f"containerd://{info.id}",
    }
    if info.message:
        t["message"] = info.message
    return t


def host_path_mounts(spec: dict, container: dict) -> list[Mount]:
    """The container's volumeMounts that name hostPath volumes (the only kind supported)."""
    paths = {
        v["name"]: v["hostPath"]["path"]
        for v in spec.get("volumes") or []
        if (v.get("hostPath") or {}).get("path")
    }
    return [
        Mount(paths[m["name"]], m["mountPath"], bool(m.get("readOnly")))
        for m in container.get("volumeMounts") or []
        if m.get("name") in paths and m.get("mountPath")
    ]


class NodeAgent:
    """One sandbox node: its Node object, its pods, their processes."""

    def __init__(self, kubeconfig: str, node_name: str, node_ip: str, runtime: PodRuntime) -> None:
        self.node_name = node_name
        self.node_ip = node_ip
        self.runtime = runtime
        self.kubeconfig = kubeconfig
        self.core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        self.pods: dict[str, dict] = {}  # uid -> pod object as the API returned it
        self.tracks: dict[str, PodTrack] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.synced = threading.Event()
        self._last_heartbeat = 0.0
        self._threads: list[threading.Thread] = []
        self._transitions: dict[str, tuple[str, str]] = {}  # node condition -> (status, since)
        self._finalized: set[str] = set()  # pods whose deletion this node completed

    # -- node object -------------------------------------------------------------

    def _node_status(self, ready: bool = True) -> dict:
        now = podstatus.rfc3339()
        mem_kib = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": "10Gi",
        }

        def cond(ctype: str, status: str, reason: str, msg: str) -> dict:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": msg,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition(ctype, status, now),
            }

        os_image = "Linux"
        try:
            for line in open("/etc/os-release"):
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
        return {
            "conditions": [
                cond(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                cond(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                cond(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    "kubelet is posting ready status" if ready else "node runtime is shutting down",
                ),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.node_ip},
                {"type": "Hostname", "address": self.node_name},
            ],
            "capacity": capacity,
            "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": os_image,
                "containerRuntimeVersion": RUNTIME_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    platform.machine(), platform.machine()
                ),
            },
        }

    def _transition(self, ctype: str, status: str, now: str) -> str:
        old = self._transitions.get(ctype)
        if old is None or old[0] != status:
            self._transitions[ctype] = (status, now)
        return self._transitions[ctype][1]

    def register_node(self) -> None:
        """Create the Node (or take over an existing one) and post a Ready status."""
        labels = {
            "kubernetes.io/hostname": self.node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "gkd-sandbox",
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": labels},
        }
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.core.patch_node(
                self.node_name, {"metadata": {"labels": labels}}, _content_type=MERGE_PATCH
            )
        self.heartbeat()

    def heartbeat(self, ready: bool = True) -> None:
        self.core.patch_node_status(
            self.node_name, {"status": self._node_status(ready)}, _content_type=MERGE_PATCH
        )
        self._last_heartbeat = time.monotonic()

    # -- pod watch ---------------------------------------------------------------

    def _list_pods(self) -> str:
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}", _preload_content=False
        )
        data = json.loads(resp.data)
        with self.lock:
            self.pods = {p["metadata"]["uid"]: p for p in data.get("items") or []}
        self.synced.set()
        self.wake.set()
        return data["metadata"]["resourceVersion"]

    def _watch_loop(self, rv: str = "") -> None:
        """List, then watch from the list's resourceVersion; re-list when it expires (410)."""
        while not self.stopping.is_set():
            try:
                if not rv:
                    rv = self._list_pods()
                w = watch.Watch()
                for ev in w.stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={self.node_name}",
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=60,
                ):
                    obj = ev["raw_object"]
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if ev["type"] == "BOOKMARK":
                        continue
                    uid = obj["metadata"]["uid"]
                    with self.lock:
                        if ev["type"] == "DELETED":
                            self.pods.pop(uid, None)
                        else:
                            self.pods[uid] = obj
                    self.wake.set()
                    if self.stopping.is_set():
                        w.stop()
            except ApiException as e:
                if e.status == 410:
                    log.info("watch expired (410 Gone): re-listing pods")
                    rv = ""
                    continue
                log.warning("pod watch failed: %s; retrying", e.reason)
                self.stopping.wait(1.0)
            except Exception as e:  # connection drops: back off, re-list
                if self.stopping.is_set():
                    return
                log.warning("pod watch failed: %s; retrying", e)
                rv = ""
                self.stopping.wait(1.0)

    # -- reconcile ---------------------------------------------------------------

    def adopt(self) -> None:
        """Rebuild tracks from what the runtime still holds (after a restart of this process)."""
        for info in self.runtime.list_containers():
            meta = self.runtime.pod_meta(info.pod_uid) or {}
            pt = self.tracks.setdefault(
                info.pod_uid,
                PodTrack(
                    info.pod_uid,
                    meta.get("namespace", ""),
                    meta.get("name", ""),
                    meta.get("podIP", ""),
                ),
            )
            ct = pt.containers.setdefault(info.name, ContainerTrack(info.name))
            if ct.current is None or info.attempt >= ct.current.attempt:
                if ct.current is not None and ct.current.state == "exited":
                    ct.last_terminated = _terminated(ct.current)
                ct.current = info
                ct.restart_count = info.attempt
            elif info.state == "exited":
                ct.last_terminated = _terminated(info)
            log.info(
                "adopted container %s/%s %s (%s)", pt.name, info.name, info.id[:12], info.state
            )

    def sync_all(self) -> None:
        with self.lock:
            pods = dict(self.pods)
        for pod in pods.values():
            try:
                self.sync_pod(pod)
            except Exception:
                log.exception(
                    "sync of pod %s/%s failed",
                    pod["metadata"].get("namespace"),
                    pod["metadata"].get("name"),
                )
        # Pods the API no longer has (deleted with grace 0 by someone else, or gone
        # while this node was down): remove them without waiting.
        if self.synced.is_set():
            for uid in set(self.runtime.list_pod_uids()) - set(pods):
                track = self.tracks.get(uid)
                if track and track.terminating:
                    continue
                log.info("pod %s is gone from the API: removing it", uid)
                self._terminate(uid, grace=2.0)
                self.tracks.pop(uid, None)

    def _sandbox_config(self, pod: dict) -> PodSandboxConfig:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        qos = (pod.get("status") or {}).get("qosClass") or podstatus.qos_class(spec)
        return PodSandboxConfig(
            meta["uid"],
            meta["namespace"],
            meta["name"],
            qos,
            podstatus.pod_limits(spec),
            host_pid=bool(spec.get("hostPID")),
            host_network=bool(spec.get("hostNetwork")),
        )

    def sync_pod(self, pod: dict) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        track = self.tracks.get(uid)
        if meta.get("deletionTimestamp"):
            if uid in self._finalized:
                return  # done; the API has not sent the DELETED event yet
            if track is None or not track.terminating:
                if track is None:
                    track = self.tracks[uid] = PodTrack(uid, meta["namespace"], meta["name"])
                track.terminating = True
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                t = threading.Thread(
                    target=self._delete_pod,
                    args=(pod, min(float(grace), MAX_GRACE_S)),
                    name=f"delete-{meta['name']}",
                    daemon=True,
                )
                t.start()
            return
        phase = (pod.get("status") or {}).get("phase")
        if track is None and phase in ("Succeeded", "Failed"):
            return  # finished before this node (re)started: nothing to run
        if track is None:
            track = self.tracks[uid] = PodTrack(uid, meta["namespace"], meta["name"])
        sandbox = self._sandbox_config(pod)
        restart_policy = spec.get("restartPolicy", "Always")
        all_done = bool(track.containers) and all(
            ct.current is not None
            and ct.current.state == "exited"
            and ct.exit_seen == ct.current.id
            and not podstatus.should_restart(restart_policy, ct.current.exit_code)
            for ct in track.containers.values()
        )
        if not all_done and not track.sandbox_ready:
            # Once per pod and runtime process: it spawns `ip` and writes cgroup files.
            track.pod_ip = self.runtime.run_pod_sandbox(sandbox)
            track.sandbox_ready = True
        for c in spec.get("containers") or []:
            ct = track.containers.setdefault(c["name"], ContainerTrack(c["name"]))
            self._sync_container(pod, sandbox, track, ct, c, restart_policy)
        self._post_status(pod, track)

    def _sync_container(
        self,
        pod: dict,
        sandbox: PodSandboxConfig,
        track: PodTrack,
        ct: ContainerTrack,
        c: dict,
        restart_policy: str,
    ) -> None:
        now = time.time()
        if ct.current is not None:
            info = self.runtime.container_status(track.uid, ct.current.id)
            if info is None:
                ct.current = None
            else:
                ct.current = info
        cur = ct.current
        if cur is not None and cur.state in ("created", "running"):
            ct.waiting = None
            return
        if cur is not None and cur.state == "exited":
            if ct.exit_seen != cur.id:
                ct.exit_seen = cur.id
                if cur.finished_at - cur.started_at > BACKOFF_RESET_AFTER_S:
                    ct.backoff_s = BACKOFF_START_S
                ct.backoff_until = cur.finished_at + ct.backoff_s
                ct.backoff_s = min(ct.backoff_s * 2, BACKOFF_MAX_S)
                log.info(
                    "container %s/%s %s exited with code %d (%s) %s",
                    track.name,
                    ct.name,
                    cur.id[:12],
                    cur.exit_code,
                    cur.reason,
                    cur.message,
                )
            if not podstatus.should_restart(restart_policy, cur.exit_code):
                ct.waiting = None
                return
            if now < ct.backoff_until:
                ct.waiting = (
                    "CrashLoopBackOff",
                    f"back-off {ct.backoff_s / 2:g}s restarting failed container={ct.name} "
                    f"pod={track.name}_{track.namespace}({track.uid})",
                )
                return
        elif now < ct.backoff_until:
            if ct.waiting and ct.waiting[0] == "ErrImagePull":
                ct.waiting = ("ImagePullBackOff", f'Back-off pulling image "{c.get("image", "")}"')
            return
        self._start(pod, sandbox, track, ct, c)

    def _start(
        self, pod: dict, sandbox: PodSandboxConfig, track: PodTrack, ct: ContainerTrack, c: dict
    ) -> None:
        previous = ct.current
        attempt = 0 if previous is None else previous.attempt + 1
        cfg = ContainerConfig(
            name=c["name"],
            image=c.get("image", ""),
            command=list(c.get("command") or []),
            args=list(c.get("args") or []),
            env=podstatus.env_for(c, pod, track.pod_ip, self.node_ip),
            working_dir=c.get("workingDir", ""),
            limits=podstatus.container_limits(c),
            attempt=attempt,
            mounts=host_path_mounts(pod.get("spec") or {}, c),
            privileged=bool((c.get("securityContext") or {}).get("privileged")),
        )
        try:
            info = self.runtime.start_container(sandbox, cfg)
        except ImagePullError as e:
            ct.pull_failures += 1
            delay = min(BACKOFF_START_S * 2 ** (ct.pull_failures - 1), BACKOFF_MAX_S)
            ct.backoff_until = time.time() + delay
            ct.waiting = ("ErrImagePull", f'Failed to pull image "{cfg.image}": {e}')
            log.info("container %s/%s: image %s not found", track.name, ct.name, cfg.image)
            return
        ct.pull_failures = 0
        if previous is not None:
            ct.last_terminated = _terminated(previous)
            # Keep only the last dead container (kubelet keeps it for lastState and logs).
            for old in self.runtime.list_containers(track.uid):
                if old.name == ct.name and old.id not in (previous.id, info.id):
                    self.runtime.remove_container(track.uid, old.id)
        ct.current = info
        ct.restart_count = attempt
        ct.waiting = None
        log.info(
            "started container %s/%s %s (pid %d, attempt %d)",
            track.name,
            ct.name,
            info.id[:12],
            info.pid,
            attempt,
        )

    def _container_status(self, c: dict, ct: ContainerTrack, restart_policy: str) -> dict:
        cur = ct.current
        cs: dict[str, Any] = {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "restartCount": ct.restart_count,
            "ready": False,
            "started": False,
            "lastState": {},
        }
        if cur is not None:
            cs["imageID"] = cur.image_id
            cs["containerID"] = f"containerd://{cur.id}"
        if ct.last_terminated:
            cs["lastState"] = {"terminated": ct.last_terminated}
        if ct.waiting:
            cs["state"] = {"waiting": {"reason": ct.waiting[0], "message": ct.waiting[1]}}
            if cur is not None and cur.state == "exited":
                cs["lastState"] = {"terminated": _terminated(cur)}
        elif cur is None or cur.state == "created":
            cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
        elif cur.state == "running":
            cs["state"] = {"running": {"startedAt": podstatus.rfc3339(cur.started_at)}}
            cs["ready"] = cs["started"] = True
        else:
            cs["state"] = {"terminated": _terminated(cur)}
        return cs

    def _post_status(self, pod: dict, track: PodTrack) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        old = pod.get("status") or {}
        restart_policy = spec.get("restartPolicy", "Always")
        statuses = [
            self._container_status(c, track.containers[c["name"]], restart_policy)
            for c in spec.get("containers") or []
        ]
        phase = podstatus.pod_phase(restart_policy, statuses)
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": self.node_ip,
            "hostIPs": [{"ip": self.node_ip}],
            "startTime": old.get("startTime") or podstatus.rfc3339(),
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass") or podstatus.qos_class(spec),
        }
        if track.pod_ip:
            status["podIP"] = track.pod_ip
            status["podIPs"] = [{"ip": track.pod_ip}]
        key = json.dumps(status, sort_keys=True)
        if key == track.last_status:
            return
        status["conditions"] = podstatus.conditions(
            phase, statuses, bool(track.pod_ip), old.get("conditions") or [], podstatus.rfc3339()
        )
        try:
            updated = self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _content_type=MERGE_PATCH
            )
        except ApiException as e:
            if e.status == 404:
                return
            raise
        track.last_status = key
        with self.lock:
            if meta["uid"] in self.pods:
                cur = self.pods[meta["uid"]]
                cur["status"] = self.core.api_client.sanitize_for_serialization(updated.status)

    # -- deletion ----------------------------------------------------------------

    def _terminate(self, uid: str, grace: float) -> None:
        track = self.tracks.get(uid)
        if track:
            for ct in track.containers.values():
                if ct.current is not None and ct.current.state != "exited":
                    self.runtime.stop_container(uid, ct.current.id, grace)
        self.runtime.remove_pod_sandbox(uid)

    def _delete_pod(self, pod: dict, grace: float) -> None:
        meta = pod["metadata"]
        uid, where = meta["uid"], f"{meta['namespace']}/{meta['name']}"
        try:
            self._terminate(uid, grace)
            log.info("pod %s stopped and cleaned up; finalizing its deletion", where)
            self.core.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("finalizing deletion of %s failed: %s; retrying", where, e.reason)
                self._retry_delete(uid)
                return
        except Exception:
            log.exception("deleting pod %s failed; retrying", where)
            self._retry_delete(uid)
            return
        self._finalized.add(uid)
        self.tracks.pop(uid, None)

    def _retry_delete(self, uid: str) -> None:
        # The next sync starts a new deletion attempt for this pod.
        track = self.tracks.get(uid)
        if track is not None:
            track.terminating = False
        time.sleep(1.0)
        self.wake.set()

    # -- main loop ---------------------------------------------------------------

    def run(self) -> None:
        """Register, adopt, then reconcile until ``stopping`` is set; then stop every pod."""
        self.adopt()
        self.register_node()
        t = threading.Thread(target=self._watch_loop, name="pod-watch", daemon=True)
        t.start()
        self._threads.append(t)
        log.info("node %s (%s) is Ready", self.node_name, self.node_ip)
        while not self.stopping.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            if self.stopping.is_set():
                break
            self.sync_all()
            if time.monotonic() - self._last_heartbeat > HEARTBEAT_S:
                try:
                    self.heartbeat()
                except Exception as e:
                    log.warning("node heartbeat failed: %s", e)
        self.shutdown()

    def shutdown(self) -> None:
        """Stop every pod on this node and mark the Node NotReady (best effort)."""
        log.info("node %s shutting down: stopping its pods", self.node_name)

        def stop(uid: str) -> None:
            try:
                self._terminate(uid, grace=2.0)
            except Exception:
                log.exception("clean-up of pod %s failed", uid)

        # In parallel, so a node full of pods that ignore SIGTERM stops within one grace period.
        workers = [
            threading.Thread(target=stop, args=(uid,), daemon=True)
            for uid in self.runtime.list_pod_uids()
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=20)
        try:
            self.core.patch_node_status(
                self.node_name,
                {"status": self._node_status(False)},
                _content_type=MERGE_PATCH,
                _request_timeout=3,
            )
        except Exception:
            pass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""
