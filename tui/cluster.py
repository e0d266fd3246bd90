"""Kubernetes facts the console needs, as pure functions over client objects.

Loading a kubeconfig, turning a ``V1Pod`` into a pod-browser row (``PodInfo``)
the way ``kubectl get pods`` would describe it, finding a node's address and a
pod's container. Nothing here imports Textual; only ``load_api_client`` and
``describe_api_error`` touch the network or the ``kubernetes`` package's state.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tui.sources.base import ContainerInfo, PodInfo

PPROF_PORT_NAME = "pprof"
PPROF_DEFAULT_PORT = 6060


class ClusterError(RuntimeError):
    """Something about the cluster or kubeconfig an operator must fix.

    The message is a full sentence that says what is wrong and what to do.
    """


# ---------------------------------------------------------------- kubeconfig


@dataclass
class KubeTarget:
    """What ``load_api_client`` resolved: the client and where it points."""

    api_client: Any  # kubernetes.client.ApiClient
    context: str  # "in-cluster" when the service-account config was used
    contexts: list[str]
    kubeconfig: str | None
    namespace: str  # the context's default namespace


def kubeconfig_paths(kubeconfig: str | None) -> list[str]:
    """The kubeconfig files kubectl would read: the flag, $KUBECONFIG, ~/.kube/config."""
    if kubeconfig:
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> KubeTarget:
    """Build an ApiClient from a kubeconfig (or the in-cluster service account).

    Raises:
        ClusterError: no usable configuration, or the context does not exist.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    paths = [p for p in kubeconfig_paths(kubeconfig) if os.path.exists(p)]
    if kubeconfig and not paths:
        raise ClusterError(
            f"The kubeconfig file {kubeconfig!r} does not exist; check --kubeconfig."
        )
    if not paths:
        # No kubeconfig anywhere: inside a pod, the service account is the config.
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=cfg)
            except ConfigException as e:
                raise ClusterError(f"The in-cluster configuration is unusable: {e}.") from None
            ns = "default"
            try:
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                    ns = f.read().strip() or "default"
            except OSError:
                pass
            return KubeTarget(client.ApiClient(cfg), "in-cluster", ["in-cluster"], None, ns)
        raise ClusterError(
            "No kubeconfig found (looked at "
            + ", ".join(kubeconfig_paths(kubeconfig))
            + "). Pass --kubeconfig FILE or set KUBECONFIG; for the demo cluster run "
            "`go-k8s-debug sandbox up` and use `go-k8s-debug sandbox kubeconfig`."
        )
    path = os.pathsep.join(paths)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, ValueError, TypeError) as e:
        raise ClusterError(f"The kubeconfig {path!r} cannot be read: {e}.") from None
    names = [c["name"] for c in contexts or []]
    if context is not None and context not in names:
        raise ClusterError(
            f"The kubeconfig has no context named {context!r}; it has: "
            + (", ".join(names) or "none")
            + "."
        )
    chosen = context or (active or {}).get("name")
    if not chosen:
        raise ClusterError(
            f"The kubeconfig {path!r} has no current context; pass --context NAME "
            f"(one of: {', '.join(names) or 'none'})."
        )
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=path, context=chosen, client_configuration=cfg)
    except (ConfigException, OSError, ValueError, TypeError) as e:
        raise ClusterError(f"The context {chosen!r} in {path!r} is unusable: {e}.") from None
    ns = "default"
    for c in contexts or []:
        if c["name"] == chosen:
            ns = (c.get("context") or {}).get("namespace") or "default"
    return KubeTarget(client.ApiClient(cfg), chosen, names, path, ns)


def describe_api_error(exc: BaseException, what: str = "talk to the API server") -> str:
    """One sentence for an exception from the kubernetes client: what failed and what to do."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        reason = getattr(exc, "reason", "") or ""
        if status == 401:
            return f"Could not {what}: the API server rejected the credentials (401 Unauthorized). Check the kubeconfig's user or token."  # noqa: E501
        if status == 403:
            return (
                f"Could not {what}: forbidden (403). The kubeconfig's user lacks a permission; "
                "apply deploy/rbac.yaml or ask the cluster admin. " + _api_message(exc)
            ).strip()
        if status == 404:
            return f"Could not {what}: not found (404). {_api_message(exc)}".strip()
        if status == 410:
            return f"Could not {what}: the resource version is too old (410 Gone)."
        return f"Could not {what}: the API server answered {status} {reason}. {_api_message(exc)}".strip()  # noqa: E501
    text = str(exc) or type(exc).__name__
    if len(text) > 300:
        text = text[:300] + "…"
    return f"Could not {what}: the API server is unreachable ({text}). Is it running, and is the kubeconfig's server address right?"  # noqa: E501


def _api_message(exc: BaseException) -> str:
    import json

    body = getattr(exc, "body", None)
    if not body:
        return ""
    try:
        msg = json.loads(body).get("message", "")
    except (ValueError, AttributeError, TypeError):
        return ""
    return f"The server said: {msg}" if msg else ""


# ---------------------------------------------------------------- pod rows


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute of a client model, or key of a dict (camelCase tolerated)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        if name in obj:
            return obj[name]
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        return obj.get(camel, default)
    return getattr(obj, name, default)


def _timestamp(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return float(value)


def pod_status(pod: Any) -> str:
    """What kubectl's STATUS column says for this pod (kubectl's printPod logic)."""
    status = _get(pod, "status")
    spec = _get(pod, "spec")
    meta = _get(pod, "metadata")
    reason = _get(status, "phase") or "Unknown"
    if _get(status, "reason"):
        reason = _get(status, "reason")

    initializing = False
    init_statuses = _get(status, "init_container_statuses") or []
    init_total = len(_get(spec, "init_containers") or [])
    for i, cs in enumerate(init_statuses):
        state = _get(cs, "state")
        term = _get(state, "terminated")
        waiting = _get(state, "waiting")
        if term is not None and (_get(term, "exit_code") or 0) == 0:
            continue
        if term is not None:
            if _get(term, "reason"):
                reason = "Init:" + _get(term, "reason")
            elif _get(term, "signal"):
                reason = f"Init:Signal:{_get(term, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_get(term, 'exit_code')}"
        elif (
            waiting is not None
            and _get(waiting, "reason")
            and _get(waiting, "reason") != "PodInitializing"
        ):  # noqa: E501
            reason = "Init:" + _get(waiting, "reason")
        else:
            reason = f"Init:{i}/{init_total or len(init_statuses)}"
        initializing = True
        break

    if not initializing:
        has_running = False
        for cs in reversed(_get(status, "container_statuses") or []):
            state = _get(cs, "state")
            waiting = _get(state, "waiting")
            term = _get(state, "terminated")
            if waiting is not None and _get(waiting, "reason"):
                reason = _get(waiting, "reason")
            elif term is not None and _get(term, "reason"):
                reason = _get(term, "reason")
            elif term is not None:
                if _get(term, "signal"):
                    reason = f"Signal:{_get(term, 'signal')}"
                else:
                    reason = f"ExitCode:{_get(term, 'exit_code')}"
            elif _get(cs, "ready") and _get(state, "running") is not None:
                has_running = True
        if reason == "Completed" and has_running:
            ready_cond = any(
                _get(c, "type") == "Ready" and _get(c, "status") == "True"
                for c in _get(status, "conditions") or []
            )
            reason = "Running" if ready_cond else "NotReady"

    if _get(meta, "deletion_timestamp") is not None:
        reason = "Unknown" if _get(status, "reason") == "NodeLost" else "Terminating"
    return str(reason)


_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
}  # fmt: skip


def parse_cpu(quantity: Any) -> Decimal | None:
    """A Kubernetes CPU quantity ("500m", "2", "0.5", "1e3m") in cores; None if unparsable."""
    if quantity is None:
        return None
    text = str(quantity).strip()
    m = re.fullmatch(r"([0-9.eE+-]+?)(n|u|m|k|M|G|T|Ki|Mi|Gi|Ti)?", text)
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        return None


def format_cpu(cores: Decimal) -> str:
    """Cores as kubectl would write them: whole cores plainly, otherwise millicores."""
    milli = (cores * 1000).to_integral_value(rounding="ROUND_CEILING")
    if milli % 1000 == 0:
        return str(int(milli // 1000))
    return f"{int(milli)}m"


def cpu_limit(pod: Any) -> str | None:
    """Sum of the containers' CPU limits ("500m"); None when no container is limited."""
    total = Decimal(0)
    found = False
    for c in _get(_get(pod, "spec"), "containers") or []:
        limits = _get(_get(c, "resources"), "limits") or {}
        cores = parse_cpu(limits.get("cpu")) if isinstance(limits, dict) else None
        if cores is not None:
            total += cores
            found = True
    return format_cpu(total) if found else None


def container_pprof_port(container: Any) -> int | None:
    """A containerPort named ``pprof``, else one numbered 6060, else None."""
    ports = _get(container, "ports") or []
    for p in ports:
        if (_get(p, "name") or "").lower() == PPROF_PORT_NAME:
            return int(_get(p, "container_port"))
    for p in ports:
        if _get(p, "container_port") == PPROF_DEFAULT_PORT:
            return PPROF_DEFAULT_PORT
    return None


def _container_state(cs: Any) -> str:
    state = _get(cs, "state")
    if state is None:
        return ""
    if _get(state, "running") is not None:
        return "running"
    waiting = _get(state, "waiting")
    if waiting is not None:
        return "waiting:" + (_get(waiting, "reason") or "")
    term = _get(state, "terminated")
    if term is not None:
        return "terminated:" + (_get(term, "reason") or f"ExitCode:{_get(term, 'exit_code')}")
    return ""


def pod_info(pod: Any) -> PodInfo:
    """Build one pod-browser row from a ``V1Pod`` (or its JSON dict). Pure."""
    meta = _get(pod, "metadata")
    spec = _get(pod, "spec")
    status = _get(pod, "status")
    statuses = {(_get(cs, "name") or ""): cs for cs in _get(status, "container_statuses") or []}
    containers = []
    ready = 0
    restarts = 0
    for c in _get(spec, "containers") or []:
        name = _get(c, "name") or ""
        cs = statuses.get(name)
        is_ready = bool(_get(cs, "ready")) if cs is not None else False
        state = _container_state(cs)
        ready += 1 if is_ready and state == "running" else 0
        n = int(_get(cs, "restart_count") or 0) if cs is not None else 0
        restarts += n
        containers.append(
            ContainerInfo(
                name=name,
                image=_get(c, "image") or "",
                container_id=_get(cs, "container_id") or None,
                ready=is_ready,
                restarts=n,
                state=state,
                pprof_port=container_pprof_port(c),
            )
        )
    pprof = next((c.pprof_port for c in containers if c.pprof_port), None)
    return PodInfo(
        namespace=_get(meta, "namespace") or "",
        name=_get(meta, "name") or "",
        uid=_get(meta, "uid") or "",
        status=pod_status(pod),
        ready=f"{ready}/{len(containers)}",
        restarts=restarts,
        created=_timestamp(_get(meta, "creation_timestamp")),
        node=_get(spec, "node_name") or None,
        cpu_limit=cpu_limit(pod),
        pprof_port=pprof,
        pod_ip=_get(status, "pod_ip") or None,
        host_ip=_get(status, "host_ip") or None,
        containers=tuple(containers),
        labels=dict(_get(meta, "labels") or {}),
        resource_version=_get(meta, "resource_version") or "",
    )


def format_age(seconds: float) -> str:
    """kubectl's AGE column: 42s, 5m10s, 3h, 2d4h, 400d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


# ---------------------------------------------------------------- nodes and containers


def node_address(node: Any, prefer: tuple[str, ...] = ("InternalIP", "Hostname")) -> str | None:
    """The node's address an operator would SSH to: InternalIP, else Hostname."""
    addresses = _get(_get(node, "status"), "addresses") or []
    for kind in prefer:
        for a in addresses:
            if _get(a, "type") == kind and _get(a, "address"):
                return str(_get(a, "address"))
    return None


def select_container(pod: PodInfo, name: str | None = None) -> ContainerInfo:
    """The named container, or the first one.

    Raises:
        ClusterError: the pod has no such container, or none at all.
    """
    if not pod.containers:
        raise ClusterError(f"Pod {pod.key} has no containers.")
    if name is None:
        return pod.containers[0]
    for c in pod.containers:
        if c.name == name:
            return c
    raise ClusterError(
        f"Pod {pod.key} has no container named {name!r}; it has: "
        + ", ".join(c.name for c in pod.containers)
        + ". Pass --container NAME."
    )


_CONTAINER_ID = re.compile(r"^(?:([a-z0-9][a-z0-9.+-]*)://)?([0-9a-fA-F]{12,128})$")


def parse_container_id(value: str | None) -> tuple[str, str] | None:
    """Split ``containerd://<hex>`` into ("containerd", "<hex>"); None if absent or malformed.

    A bare hex ID is accepted with an empty runtime. Anything else (including
    hostile text) is rejected, because the ID ends up on a remote command line.
    """
    if not value:
        return None
    m = _CONTAINER_ID.match(value.strip())
    if not m:
        return None
    return (m.group(1) or "", m.group(2).lower())
