"""Pure functions that turn a pod spec and container states into kubelet-shaped values.

Phase and conditions follow kubelet's ``getPhase`` and status manager
(pkg/kubelet/kubelet_pods.go) closely enough that tools reading them (kubectl,
the console) see what they would see on a real node.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .cgroups import Limits


def rfc3339(ts: float | None = None) -> str:
    """A Kubernetes timestamp (second precision, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def _q(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    return parse_quantity(str(value))


def container_limits(container: dict) -> Limits:
    """CPU (millicores) and memory (bytes) limits and the CPU request of one container."""
    res = container.get("resources") or {}
    lim, req = res.get("limits") or {}, res.get("requests") or {}
    cpu, mem = _q(lim.get("cpu")), _q(lim.get("memory"))
    cpu_req = _q(req.get("cpu")) or cpu
    return Limits(
        cpu_millis=int(cpu * 1000) if cpu else None,
        memory_bytes=int(mem) if mem else None,
        cpu_request_millis=int(cpu_req * 1000) if cpu_req else None,
    )


def pod_limits(spec: dict) -> Limits:
    """Pod-level limits: the sum over containers, only when every container sets that limit."""
    each = [container_limits(c) for c in spec.get("containers") or []]
    if not each:
        return Limits()
    cpu = sum(x.cpu_millis or 0 for x in each) if all(x.cpu_millis for x in each) else None
    mem = sum(x.memory_bytes or 0 for x in each) if all(x.memory_bytes for x in each) else None
    req = sum(x.cpu_request_millis or 0 for x in each) or None
    return Limits(cpu_millis=cpu, memory_bytes=mem, cpu_request_millis=req)


def qos_class(spec: dict) -> str:
    """Guaranteed, Burstable or BestEffort, by the rules of the Kubernetes QoS docs."""
    containers = spec.get("containers") or []
    any_set = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            any_set = True
        for r in ("cpu", "memory"):
            lv, rv = _q(lim.get(r)), _q(req.get(r))
            if lv is None or (rv is not None and rv != lv):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def pod_phase(restart_policy: str, statuses: list[dict]) -> str:
    """kubelet's getPhase for regular containers (no init or sidecar containers)."""
    waiting = running = stopped = succeeded = unknown = 0
    for cs in statuses:
        st = cs.get("state") or {}
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in st:
            if (cs.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def should_restart(restart_policy: str, exit_code: int) -> bool:
    """Whether a container that exited with ``exit_code`` is started again."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def conditions(
    phase: str, statuses: list[dict], sandbox_ready: bool, previous: list[dict], now: str
) -> list[dict]:
    """Pod conditions; lastTransitionTime only moves when a condition's status changes."""
    prev = {c.get("type"): c for c in previous or []}
    unready = [cs["name"] for cs in statuses if not cs.get("ready")]
    done = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if done else "ContainersNotReady"
    ready_msg = "" if done else f"containers with unready status: [{' '.join(unready)}]"
    want = [
        ("PodReadyToStartContainers", sandbox_ready and not done, "", ""),
        ("Initialized", True, "", ""),
        ("Ready", not unready and not done, ready_reason, ready_msg),
        ("ContainersReady", not unready and not done, ready_reason, ready_msg),
        ("PodScheduled", True, "", ""),
    ]
    out = []
    for ctype, ok, reason, msg in want:
        status = "True" if ok else "False"
        old = prev.get(ctype) or {}
        c: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": old.get("lastTransitionTime")
            if old.get("status") == status
            else now,
        }
        if not ok and reason:
            c["reason"], c["message"] = reason, msg
        out.append(c)
    return out


def env_for(container: dict, pod: dict, pod_ip: str, host_ip: str) -> dict[str, str]:
    """The container's environment: literal values and the common fieldRef sources."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    env: dict[str, str] = {}
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e.get("value") or "")
            continue
        ref = ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
        if ref in fields:
            env[e["name"]] = fields[ref]
    return env
