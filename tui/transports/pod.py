"""The pod transport: the agent in a short-lived privileged pod on the target's node.

The `kubectl debug node` pattern, for clusters that give no SSH to nodes. Only the
Kubernetes API is needed, through the operator's own kubeconfig:

1. create a pod in the agent namespace (``godebug``, made by deploy/rbac.yaml) bound
   to the target's node (``spec.nodeName``), with hostPID, privileged, root, and the
   node's /sys, kernel headers and tracefs mounted; its main process only waits, and
   ends the pod once the agent is gone, so a console that died leaves nothing running;
2. watch it until it runs, turning image pull failures, refusals (RBAC, Pod
   Security admission) and time-outs into sentences that say what to do;
3. exec a small loader into it (websocket channel protocol ``v4.channel.k8s.io``):
   it reads the agent bundle from the first stdin line and runs it with the
   image's python3, so the image needs only python3 and bcc, nothing of ours;
4. from then on stdin carries commands and stdout frames, as over ssh;
5. on close: end the exec (the agent exits on stdin EOF) and delete the pod.

Names are the sandbox's and the cluster's; nothing here imports Textual.
"""

from __future__ import annotations

import atexit
import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from tui.transports.base import AgentTarget, StderrTail, TransportError
from tui.transports.bundle import agent_bundle

DEFAULT_NAMESPACE = "godebug"
CONTAINER = "agent"
LABELS = {"app.kubernetes.io/name": "go-k8s-debug", "app.kubernetes.io/component": "agent"}
# The longest one agent pod lives: its main process ends then, and activeDeadlineSeconds
# has the kubelet stop it too.
MAX_LIFETIME_S = 4 * 3600
RUNNING_TIMEOUT_S = 90.0
# The pod's main process ends this long after start if no agent ever arrived (the console
# died before its exec), so a crashed console leaves no privileged pod running for hours.
IDLE_EXIT_S = 120
V4_PROTOCOL = "v4.channel.k8s.io"
STDOUT, STDERR, ERROR = 1, 2, 3
# Container waiting reasons that will not fix themselves.
_FATAL_WAITING = {
    "ErrImagePull": "the node could not pull the agent image",
    "ImagePullBackOff": "the node could not pull the agent image",
    "InvalidImageName": "the agent image name is invalid",
    "ErrImageNeverPull": "the agent image is not on the node and may not be pulled",
    "CreateContainerConfigError": "the agent container could not be configured",
    "CreateContainerError": "the agent container could not be created",
    "RunContainerError": "the agent container could not be started",
}

# Runs as `python3 -c LOADER ARGS...`. The first stdin line is "<length> <base64 bundle>";
# it is read with unbuffered os.read so that no command line that follows it is swallowed
# into a buffer that exec would throw away. The bundle goes to a private temp file
# (the container's own /tmp) and replaces this process, keeping stdin/stdout.
LOADER = """\
import base64, os, sys, tempfile
head = b""
while not head.endswith(b" "):
    c = os.read(0, 1)
    if not c:
        sys.exit("go-k8s-debug loader: stdin closed before the agent bundle arrived")
    head += c
left = int(head) + 1
parts = []
while left:
    chunk = os.read(0, min(left, 1 << 16))
    if not chunk:
        sys.exit("go-k8s-debug loader: stdin closed in the middle of the agent bundle")
    parts.append(chunk)
    left -= len(chunk)
fd, path = tempfile.mkstemp(prefix="go-k8s-debug-agent-", suffix=".pyz")
os.write(fd, base64.b64decode(b"".join(parts)))
os.close(fd)
os.execv(sys.executable, [sys.executable, path] + sys.argv[1:])
"""


# The pod's main process: it keeps the pod alive while an agent runs in it, and ends it
# once the agent is gone (the console closed or died: its exec, and so the agent, ended),
# or when none came. Agents are the processes in this container's mount namespace whose
# command line names go-k8s-debug (the loader, then the bundle it runs).
KEEPER = """\
import os, sys, time
me, start = os.readlink("/proc/self/ns/mnt"), time.time()
seen = False
while time.time() - start < {lifetime}:
    time.sleep(2)
    alive = False
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            if os.readlink("/proc/%s/ns/mnt" % p) != me:
                continue
            with open("/proc/%s/cmdline" % p, "rb") as f:
                alive = b"go-k8s-debug" in f.read()
        except OSError:
            continue
        if alive:
            break
    seen = seen or alive
    if (seen and not alive) or (not seen and time.time() - start > {idle}):
        sys.exit(0)
"""


def bundle_line(data: bytes) -> bytes:
    """The loader's first stdin line for a bundle: ``b"<len> <base64>\\n"``."""
    b64 = base64.b64encode(data)
    return str(len(b64)).encode() + b" " + b64 + b"\n"


# Agent pods this process created and has not deleted yet, so that a console that exits
# while a session is still closing (in a daemon thread) deletes them on the way out.
_LIVE: dict[tuple[str, str], PodTransport] = {}
_LIVE_LOCK = threading.Lock()


@atexit.register
def _delete_live_pods() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.items())
    for (namespace, name), transport in live:
        transport.delete_pod(name, namespace)


_DNS_BAD = re.compile(r"[^a-z0-9-]+")


def agent_pod_name(node: str | None, suffix: str | None = None) -> str:
    """A valid, unique pod name that says which node it serves (node names may be hostile)."""
    part = _DNS_BAD.sub("-", (node or "node").lower()).strip("-")[:30].strip("-") or "node"
    return f"godebug-agent-{part}-{suffix or secrets.token_hex(3)}"


def agent_pod_manifest(
    name: str,
    namespace: str,
    node: str,
    image: str,
    lifetime_s: int = MAX_LIFETIME_S,
    idle_s: int = IDLE_EXIT_S,
) -> dict[str, Any]:
    """The agent pod (deploy/agent-pod.yaml's shape, with a sleeping main process)."""
    host = [
        # (volume name, host path, mount path, read-only)
        ("sys", "/sys", "/sys", True),
        ("debugfs", "/sys/kernel/debug", "/sys/kernel/debug", False),
        ("tracefs", "/sys/kernel/tracing", "/sys/kernel/tracing", False),
        ("modules", "/lib/modules", "/lib/modules", True),
        ("usr-src", "/usr/src", "/usr/src", True),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": lifetime_s,
            "terminationGracePeriodSeconds": 0,
            "hostPID": True,
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    # The agent itself arrives over exec; this keeps the pod alive meanwhile.
                    "command": [
                        "python3", "-c", KEEPER.format(lifetime=lifetime_s, idle=idle_s)
                    ],
                    "securityContext": {"privileged": True, "runAsUser": 0},
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        # bcc's clang compile peaks near 200 MiB; the agent stays far below.
                        "limits": {"memory": "512Mi"},
                    },
                    "volumeMounts": [
                        {"name": v, "mountPath": m, "readOnly": ro} for v, _, m, ro in host
                    ],
                }
            ],
            "volumes": [{"name": v, "hostPath": {"path": p}} for v, p, _, _ in host],
        },
    }


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def pod_problem(pod: dict[str, Any], image: str) -> str | None:
    """A sentence if the agent pod can never run (pure; ``pod`` as the API's JSON), else None."""
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = _get(cs, "state", "waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _FATAL_WAITING:
            msg = waiting.get("message", "")
            hint = (
                f" Pass --agent-image with an image the node can pull that has python3 and bcc "
                f"(Debian: python3-bpfcc); {image!r} is not one."
                if "image" in _FATAL_WAITING[reason]
                else ""
            )
            return f"{_FATAL_WAITING[reason]} ({reason}: {msg}).{hint}"
        term = _get(cs, "state", "terminated")
        if term:
            return (
                f"the agent pod's container ended at once (exit code {term.get('exitCode')}, "
                f"{term.get('reason', '')}): {term.get('message', '')}".rstrip(": ")
            )
    if status.get("phase") in ("Failed", "Succeeded"):
        why = status.get("reason") or status.get("phase")
        return f"the node refused or ended the agent pod ({why}: {status.get('message', '')})"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return f"the agent pod cannot be scheduled: {cond.get('message', '')}"
    return None


def pod_running(pod: dict[str, Any]) -> bool:
    """True when the agent container runs (so exec can reach it)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(
        cs.get("name") == CONTAINER and _get(cs, "state", "running")
        for cs in status.get("containerStatuses") or []
    )


def _handshake_status(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, server message) from a failed websocket handshake (0 if unknown)."""
    text = str(getattr(exc, "reason", "") or exc)
    m = re.search(r"Handshake status (\d{3})", text)
    status = int(m.group(1)) if m else int(getattr(exc, "status", 0) or 0)
    msg = ""
    m = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text)
    if m:
        try:
            msg = json.loads(f'"{m.group(1)}"')
        except ValueError:
            msg = m.group(1)
    return status, msg


class PodLink:
    """The agent in the exec session of the agent pod; the pod is deleted on close."""

    def __init__(
        self,
        transport: PodTransport,
        ws: Any,
        name: str,
        namespace: str,
        description: str,
    ) -> None:
        self.description = description
        self._t = transport
        self._ws = ws
        self.name, self.namespace = name, namespace
        self._tail = StderrTail()
        self._status: dict[str, Any] | None = None
        self._closed = False
        self._wlock = threading.Lock()
        self._close_lock = threading.Lock()

    def lines(self) -> Iterator[bytes]:
        ws = self._ws
        buf = b""
        while ws.is_open():
            try:
                ws.update(timeout=1.0)
            except Exception:  # noqa: BLE001 - the connection dropped
                break
            err = ws.read_channel(ERROR)
            if err:
                try:
                    self._status = json.loads(err)
                except ValueError:
                    self._status = {"message": err.decode("utf-8", "replace")}
            for line in ws.read_channel(STDERR).splitlines():
                self._tail.add(line.decode("utf-8", "replace"))
            out = ws.read_channel(STDOUT)
            if out:
                buf += out
                *whole, buf = buf.split(b"\n")
                for line in whole:
                    yield line + b"\n"
        if buf:
            yield buf

    def write(self, line: bytes) -> None:
        try:
            with self._wlock:
                self._ws.write_channel(0, line)
        except Exception as e:  # noqa: BLE001 - websocket errors have many types
            raise TransportError(f"The agent pod's exec session is gone: {e}.") from None

    def close(self) -> None:
        # A second caller (the session's reader and its close()) waits until the pod is gone.
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._ws.close()  # the kubelet closes the agent's stdin: it detaches and exits
            except Exception:  # noqa: BLE001
                pass
            self._t.delete_pod(self.name, self.namespace)

    def end_reason(self) -> str:
        st = self._status or {}
        if st.get("status") == "Success":
            what = "the agent exited with status 0"
        elif st:
            what = f"the agent ended: {st.get('message', st)}"
        else:
            what = "the exec session into the agent pod closed"
        tail = self._tail.text()
        return f"{what}: {tail}" if tail else what


class PodTransport:
    """Start the agent in a short-lived privileged pod on the target's node.

    Args:
        api_client: a kubernetes ``ApiClient`` for the operator's kubeconfig.
        image: the agent image (python3 + bcc).
        namespace: where the agent pod goes (deploy/rbac.yaml's ``godebug``).
        running_timeout: seconds to wait for the pod to run.
        log: ``log(level, message)`` for what was created and removed.
    """

    name = "pod"

    def __init__(
        self,
        api_client: Any,
        image: str,
        namespace: str = DEFAULT_NAMESPACE,
        running_timeout: float = RUNNING_TIMEOUT_S,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.image = image
        self.namespace = namespace
        self.running_timeout = running_timeout
        self._log = log
        self._early: list[tuple[str, str]] = []
        self._log_lock = threading.Lock()
        #: Seconds of the last start: pod create -> Running, exec opened, total.
        self.timings: dict[str, float] = {}

    def set_log(self, log: Callable[[str, str], None]) -> None:
        """Where to say what was created and deleted; earlier messages are replayed."""
        with self._log_lock:
            self._log, early, self._early = log, self._early, []
        for level, msg in early:
            log(level, msg)

    def log(self, level: str, msg: str) -> None:
        # The session starts its attach thread before it can hand us its log: keep
        # what is said until then.
        with self._log_lock:
            if self._log is None:
                self._early.append((level, msg))
                return
            log = self._log
        log(level, msg)

    def start(self, target: AgentTarget) -> PodLink:
        if not target.node:
            raise TransportError(
                f"Pod {target.pod.key} has no node yet; the agent pod goes to the target's "
                "node, so wait until it is scheduled.",
                retry=True,
            )
        name = agent_pod_name(target.node)
        t0 = time.monotonic()
        self._create(name, target.node)
        try:
            self._wait_running(name, target.node)
            t_run = time.monotonic()
            ws = self._exec(name, target.agent_args())
            t_exec = time.monotonic()
        except BaseException:
            self.delete_pod(name, self.namespace)
            raise
        self.timings = {
            "create_to_running_s": t_run - t0,
            "exec_and_bundle_s": t_exec - t_run,
        }
        return PodLink(
            self, ws, name, self.namespace,
            f"pod {self.namespace}/{name} on {target.node} (exec)",
        )

    # -- steps ---------------------------------------------------------------------

    def _create(self, name: str, node: str) -> None:
        from kubernetes.client.rest import ApiException

        body = agent_pod_manifest(name, self.namespace, node, self.image)
        try:
            self.core.create_namespaced_pod(self.namespace, body, _request_timeout=(5, 30))
        except ApiException as e:
            raise self._create_error(e) from None
        except Exception as e:  # noqa: BLE001 - connection problems
            raise TransportError(
                f"Could not create the agent pod: the API server is unreachable ({e})."
            ) from None
        with _LIVE_LOCK:
            _LIVE[(self.namespace, name)] = self
        self.log(
            "info",
            f"created agent pod {self.namespace}/{name} on node {node} "
            f"(image {self.image}, privileged, hostPID)",
        )

    def _create_error(self, e: Any) -> TransportError:
        from tui.cluster import _api_message

        said = _api_message(e)
        where = f"namespace {self.namespace!r}"
        if e.status == 403 and "PodSecurity" in (e.body or ""):
            return TransportError(
                f"Pod Security admission refused the privileged agent pod in {where}. "
                f"Label the namespace pod-security.kubernetes.io/enforce=privileged "
                f"(deploy/rbac.yaml does) or pass --agent-namespace. {said}".strip(),
                retry=False,
            )
        if e.status == 403:
            return TransportError(
                f"Not allowed to create the agent pod in {where} (403 Forbidden). Apply "
                "deploy/rbac.yaml and bind your user to the go-k8s-debug-agent Role there, or "
                f"pass --agent-namespace with a namespace you may use. {said}".strip(),
                retry=False,
            )
        if e.status == 404:
            return TransportError(
                f"The agent namespace {self.namespace!r} does not exist: apply "
                "deploy/rbac.yaml (it creates it) or pass --agent-namespace.",
                retry=False,
            )
        if e.status == 422:
            return TransportError(f"The API server rejected the agent pod: {said}", retry=False)
        return TransportError(
            f"Could not create the agent pod ({e.status} {e.reason}). {said}".strip()
        )

    def _wait_running(self, name: str, node: str) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        deadline = time.monotonic() + self.running_timeout
        last: dict[str, Any] = {}
        w = watch.Watch()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    for ev in w.stream(
                        self.core.list_namespaced_pod,
                        self.namespace,
                        field_selector=f"metadata.name={name}",
                        timeout_seconds=max(1, int(left)),
                        _request_timeout=(5, left + 5),
                    ):
                        pod = self.api_client.sanitize_for_serialization(ev["object"])
                        if ev["type"] == "DELETED":
                            raise TransportError(
                                f"The agent pod {self.namespace}/{name} was deleted while "
                                "starting (by someone else, or its node went away)."
                            )
                        last = pod
                        if pod_running(pod):
                            return
                        problem = pod_problem(pod, self.image)
                        if problem:
                            raise TransportError(
                                f"The agent pod on node {node} cannot run: {problem}",
                                retry=False,
                            )
                        if time.monotonic() > deadline:
                            break
                except ApiException as e:
                    from tui.cluster import describe_api_error

                    raise TransportError(
                        describe_api_error(e, f"watch the agent pod in {self.namespace!r}"),
                        retry=e.status not in (401, 403),
                    ) from None
        finally:
            w.stop()
        phase = _get(last, "status", "phase") or "unknown"
        raise TransportError(
            f"The agent pod {self.namespace}/{name} did not start within "
            f"{self.running_timeout:.0f} s (phase {phase}). Check that node {node} is Ready "
            "and can pull the agent image.",
        )

    def _exec(self, name: str, args: list[str]) -> Any:
        from kubernetes.stream import stream

        try:
            ws = stream(
                self.core.connect_get_namespaced_pod_exec,
                name,
                self.namespace,
                container=CONTAINER,
                command=["python3", "-c", LOADER, *args],
                stdin=True,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
                # v4 only: the API server passes it through to the kubelet as a websocket
                # (any kubelet speaks it), where v5 would be translated to SPDY.
                _headers={"sec-websocket-protocol": V4_PROTOCOL},
            )
        except Exception as e:  # noqa: BLE001 - ApiException(status=0) wraps handshake errors
            raise self._exec_error(e, name) from None
        try:
            ws.write_channel(0, bundle_line(agent_bundle().data))
        except Exception as e:  # noqa: BLE001
            try:
                ws.close()
            except Exception:  # noqa: BLE001
                pass
            raise TransportError(f"Could not send the agent to the agent pod: {e}.") from None
        return ws

    def _exec_error(self, e: BaseException, name: str) -> TransportError:
        status, msg = _handshake_status(e)
        where = f"{self.namespace}/{name}"
        if status == 403:
            return TransportError(
                f"Not allowed to exec into the agent pod {where} (403 Forbidden): the Role in "
                "deploy/rbac.yaml grants pods/exec (get and create) in the agent namespace. "
                f"{msg}".strip(),
                retry=False,
            )
        if status in (500, 502, 503) or "dial" in msg or "kubelet" in msg.lower():
            return TransportError(
                f"The API server could not reach the kubelet of the agent pod's node to exec "
                f"into {where} ({status}: {msg or e}). Check that the node's kubelet API "
                "(port 10250) is up and reachable from the API server.",
                retry=False,
            )
        return TransportError(f"Could not exec into the agent pod {where}: {msg or e}.")

    def delete_pod(self, name: str, namespace: str) -> None:
        """Delete the agent pod at once (grace 0); log what happened."""
        from kubernetes.client.rest import ApiException

        with _LIVE_LOCK:
            if (namespace, name) not in _LIVE:
                return  # deleted already (the session's close and the exit hook both ask)
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, _request_timeout=(5, 15)
            )
        except ApiException as e:
            if e.status == 404:
                self.log("info", f"agent pod {namespace}/{name} was already gone")
                return
            self.log(
                "warn",
                f"could not delete the agent pod {namespace}/{name} ({e.status} {e.reason}); "
                f"delete it with `kubectl -n {namespace} delete pod {name}`",
            )
            return
        except Exception as e:  # noqa: BLE001
            self.log(
                "warn",
                f"could not delete the agent pod {namespace}/{name} ({e}); "
                f"delete it with `kubectl -n {namespace} delete pod {name}`",
            )
            return
        finally:
            with _LIVE_LOCK:
                _LIVE.pop((namespace, name), None)
        self.log("info", f"deleted agent pod {namespace}/{name}")
