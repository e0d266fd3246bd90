"""The pprof-only transport: no node access, just the pod's pprof via the API server.

The API server's pod proxy (``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/...``)
dials the pod IP itself, so this needs only ``get pods/proxy`` RBAC. It cannot
reach a pprof server bound to localhost inside the pod, and it sees nothing of
the kernel or the cgroup: the first frame says so. Frames are made with
``bpf.schema.make_frame`` and handed out as encoded lines, like an agent's.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from bpf.schema import (
    FrameError,
    decode_command,
    empty_profile_note,
    encode,
    make_frame,
    profile_frame,
)
from tui.cluster import PPROF_DEFAULT_PORT
from tui.transports.base import AgentTarget

CPU_PROFILE_SECONDS = 5
GOROUTINE_POLL_S = 1.0
UNREACHABLE_RETRY_S = 5.0
MISSING_TEXT = (
    "pprof-only mode (no node access): goroutines and the call tree come from the pod's pprof "
    "through the API server. Missing: futex waits, CPU throttling and eBPF stacks; attach with "
    "--transport ssh or local for those."
)

_INDEX_GOROUTINES = re.compile(rb"(\d+)\s*</td>\s*<td>\s*<a\s+href=['\"]?goroutine", re.I)
_DEBUG1_TOTAL = re.compile(rb"goroutine profile: total (\d+)")


def goroutines_from_index(html: bytes) -> int | None:
    """The goroutine count on the /debug/pprof/ index page (runtime.NumGoroutine)."""
    m = _INDEX_GOROUTINES.search(html)
    return int(m.group(1)) if m else None


class PprofUnreachable(Exception):
    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class PodProxyPprof:
    """GETs on the pod's pprof endpoints through the API server."""

    def __init__(self, api_client: Any, namespace: str, pod: str, port: int) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.pod = pod
        self.port = port

    def index(self) -> bytes:
        """The pprof index page (the documented client call, raw bytes)."""
        try:
            resp = self.core.connect_get_namespaced_pod_proxy_with_path(
                name=f"{self.pod}:{self.port}",
                namespace=self.namespace,
                path="debug/pprof/",
                _preload_content=False,  # else the client mangles the body (client-python#2158)
                _request_timeout=(5, 10),
            )
        except Exception as e:  # noqa: BLE001
            raise _unreachable(e) from None
        data = resp.data if hasattr(resp, "data") else resp.read()
        return bytes(data)

    def get(
        self, endpoint: str, params: dict[str, Any] | None = None, timeout: float = 30
    ) -> bytes:
        """GET debug/pprof/<endpoint> with query parameters (the generated method can't
        pass ``?seconds=``: it percent-encodes everything into the path)."""
        resource = (
            f"/api/v1/namespaces/{quote(self.namespace, safe='')}/pods/"
            f"{quote(f'{self.pod}:{self.port}', safe=':')}/proxy/debug/pprof/"
            f"{quote(endpoint, safe='/')}"
        )
        method, url, headers, body, post = self.api_client.param_serialize(
            method="GET",
            resource_path=resource,
            query_params=[(k, str(v)) for k, v in (params or {}).items()],
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
        )
        try:
            resp = self.api_client.call_api(
                method,
                url,
                header_params=headers,
                body=body,
                post_params=post,
                _request_timeout=(5, timeout),
            )
            resp.read()
        except Exception as e:  # noqa: BLE001
            raise _unreachable(e) from None
        if not 200 <= resp.status < 300:
            raise PprofUnreachable(resp.status, (resp.data or b"")[:300].decode("utf-8", "replace"))
        return bytes(resp.data)


def _unreachable(e: BaseException) -> PprofUnreachable:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None) or getattr(e, "data", None) or b""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return PprofUnreachable(
        status if isinstance(status, int) else None, (str(body) or str(e))[:300]
    )


def profile_is_empty(data: bytes) -> bool:
    try:
        from tui.profiles.pprof import Profile, ProfileError
    except ImportError:
        return len(data) == 0
    try:
        return Profile.from_bytes(data).empty
    except ProfileError:
        return False


_SENTINEL = object()


class ProxyLink:
    """Frames made from pprof over the pod proxy, as lines."""

    def __init__(
        self, pprof: PodProxyPprof, target: AgentTarget, cpu_seconds: int = CPU_PROFILE_SECONDS
    ) -> None:
        self.pprof = pprof
        self.target = target
        self.cpu_seconds = cpu_seconds
        self.description = f"pprof via API server ({target.pod.key}:{pprof.port})"
        self._q: queue.Queue[Any] = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._reachable: bool | None = None
        self._reach_lock = threading.Lock()
        self._seq = 0
        self._threads = [
            threading.Thread(target=self._goroutine_loop, daemon=True, name="pprof-goroutines"),
            threading.Thread(target=self._cpu_loop, daemon=True, name="pprof-cpu"),
        ]
        self._emit(
            "hello",
            agent="go-k8s-debug pprof-only",
            host="api-server pod proxy",
            kernel=None,
            target={
                "pod": target.pod.key,
                "container": target.container.name,
                "pprof_port": pprof.port,
                "pod_ip": target.pod.pod_ip,
            },
            collectors={
                "goroutines": {"available": True, "cost": "1 HTTP GET per second"},
                "profiles": {"available": True, "cost": "Go's 100 Hz CPU profiler, always on"},
            },
            clock_offset_ns=0,
            mode="pprof-only",
        )
        self._emit("log", level="warn", msg=MISSING_TEXT)
        for t in self._threads:
            t.start()

    # ------------------------------------------------ output

    def _emit(self, kind: str, **fields: Any) -> None:
        self._emit_frame(make_frame(kind, **fields))

    def _emit_frame(self, frame: dict[str, Any]) -> None:
        if self._stop.is_set() and frame["kind"] != "bye":
            return
        line = encode(frame).encode()
        try:
            self._q.put(line, timeout=5)
        except queue.Full:
            pass  # the console stopped reading; dropping is better than blocking pprof

    def _mark(self, ok: bool, err: PprofUnreachable | None = None) -> None:
        with self._reach_lock:
            changed = ok != self._reachable
            self._reachable = ok
        if not changed:
            return
        if ok:
            self._emit(
                "log",
                level="info",
                msg=f"reading pprof of {self.target.pod.key} on port {self.pprof.port} "
                "through the API server",
            )
            return
        assert err is not None
        pod = self.target.pod
        where = f"{pod.pod_ip}:{self.pprof.port}" if pod.pod_ip else f"port {self.pprof.port}"
        self._emit(
            "error",
            code="pprof_unreachable",
            fatal=False,
            msg=(
                f"The API server could not reach pprof of {pod.key} at {where}"
                + (f" (HTTP {err.status})" if err.status else "")
                + f": {err.detail.strip()}"
            ),
            hint=(
                "The pod proxy dials the pod IP, so a pprof server bound to 127.0.0.1/localhost "
                "inside the pod is unreachable this way (and the pod must expose net/http/pprof "
                "on that port). Attach with --transport ssh or local: the agent reaches "
                "localhost inside the pod's network namespace. Retrying every "
                f"{UNREACHABLE_RETRY_S:g} s."
            ),
        )

    # ------------------------------------------------ pollers

    def _goroutine_loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                html = self.pprof.index()
                count = goroutines_from_index(html)
                if count is None:
                    text = self.pprof.get("goroutine", {"debug": 1}, timeout=10)
                    m = _DEBUG1_TOTAL.search(text)
                    count = int(m.group(1)) if m else None
                self._mark(True)
                if count is not None:
                    self._emit("goroutines", count=count, source="pprof_index")
                wait = GOROUTINE_POLL_S
            except PprofUnreachable as e:
                self._mark(False, e)
                wait = UNREACHABLE_RETRY_S
            self._stop.wait(max(0.0, wait - (time.monotonic() - t0)))

    def _cpu_loop(self) -> None:
        while not self._stop.is_set():
            if self._reachable is not True:
                self._stop.wait(0.5)
                continue
            self._seq += 1
            self._fetch_profile(f"cpu-{self._seq}", "cpu", self.cpu_seconds)

    def _fetch_profile(self, pid: str, kind: str, seconds: int) -> None:
        endpoint = "profile" if kind == "cpu" else kind
        params: dict[str, Any] = {}
        if seconds and seconds > 0:
            params["seconds"] = int(seconds)
        try:
            data = self.pprof.get(endpoint, params, timeout=max(30, seconds + 20))
        except PprofUnreachable as e:
            if kind == "cpu" and e.status == 500 and "profil" in e.detail.lower():
                self._emit(
                    "log",
                    level="warn",
                    msg="another CPU profile is running in the app (only one at a time "
                    "per process; a continuous profiler?); retrying",
                )
                self._stop.wait(self.cpu_seconds)
            elif kind == "cpu":
                self._mark(False, e)
                self._stop.wait(UNREACHABLE_RETRY_S)
            else:
                self._emit(
                    "error",
                    code="profile_failed",
                    fatal=False,
                    msg=f"Could not fetch the {kind} profile: {e.detail.strip()}",
                    hint="Check that the app serves net/http/pprof on this port.",
                )
            return
        empty = profile_is_empty(data)
        note = empty_profile_note(kind, seconds) if empty else ""
        self._emit_frame(profile_frame(pid, kind, seconds, data, empty, note, source="pod_proxy"))

    # ------------------------------------------------ AgentLink

    def lines(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is _SENTINEL:
                return
            yield item

    def write(self, line: bytes) -> None:
        try:
            cmd = decode_command(line)
        except FrameError as e:
            self._emit("log", level="warn", msg=f"ignored a bad command: {e}")
            return
        name = cmd["cmd"]
        if name == "profile":
            kind = str(cmd.get("profile"))
            threading.Thread(
                target=self._fetch_profile,
                args=(str(cmd.get("id")), kind, int(cmd.get("seconds") or 0)),
                daemon=True,
                name=f"pprof-{kind}",
            ).start()
        elif name in ("enable", "disable"):
            coll = str(cmd.get("collector"))
            if coll not in ("goroutines",):
                self._emit(
                    "collector",
                    name=coll,
                    state="failed",
                    reason="not available in pprof-only mode (no node access)",
                )
        elif name == "stop":
            self.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._emit("bye", reason="closed", detached=0)
        self._stop.set()
        self._q.put(_SENTINEL)

    def end_reason(self) -> str:
        return "pprof-only link closed" if self._stop.is_set() else "pprof-only link ended"


class PprofOnlyTransport:
    """Reads pprof through the API server; needs the pod's kube client, not the node."""

    name = "pprof-only"

    def __init__(self, api_client: Any, cpu_seconds: int = CPU_PROFILE_SECONDS) -> None:
        self.api_client = api_client
        self.cpu_seconds = cpu_seconds

    def start(self, target: AgentTarget) -> ProxyLink:
        """Start polling; a pod without a declared pprof port is tried on 6060."""
        port = target.container.pprof_port or target.pod.pprof_port
        guessed = port is None
        port = port or PPROF_DEFAULT_PORT
        pprof = PodProxyPprof(self.api_client, target.pod.namespace, target.pod.name, port)
        link = ProxyLink(pprof, target, self.cpu_seconds)
        if guessed:
            link._emit(
                "log",
                level="warn",
                msg=f"{target.pod.key} declares no pprof port (a containerPort named "
                f"'pprof'); trying the usual {PPROF_DEFAULT_PORT}",
            )
        return link
