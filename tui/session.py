"""An attached pod: frames from the agent over a transport, kept alive.

``AgentSession`` implements the ``Session`` seam. A supervisor thread starts
the agent through a transport, decodes its lines (bad lines are counted and
reported, never fatal), and when the link drops it reconnects with backoff and
re-attaches. When the container restarts (the agent says ``target_exit`` or
the pod status shows a new container ID) it looks up the new ID through the
API and attaches to that. Everything it does is told to the operator as
``log`` frames marked ``origin: console``.

``KubeSessionFactory`` picks the transport (``--transport auto|local|ssh|
pprof-only``) and builds sessions.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from bpf.schema import FrameError, decode_frame, encode, make_frame
from tui.cluster import (
    ClusterError,
    describe_api_error,
    node_address,
    parse_container_id,
    select_container,
)
from tui.sources.base import PodInfo, SessionInfo
from tui.transports.base import AgentLink, AgentTarget, Transport, TransportError

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
POD_POLL_S = 3.0
BAD_LINE_REPORT_S = 10.0
TRANSPORTS = ("auto", "local", "ssh", "pod", "pprof-only")

# A node's address is read again after this long (it is asked for on every attach).
NODE_ADDRESS_TTL_S = 60.0

# Commands that set state the agent must have again after a re-attach.
_STICKY = ("enable", "disable", "set")


@dataclass(frozen=True)
class LinkHealth:
    """What the header shows about the link."""

    state: str  # connecting | attached | reconnecting | following | ended
    description: str  # "ssh 10.88.0.2 (node-1)"
    last_frame_age: float | None  # seconds since the last frame, None before the first
    frames: int
    bad_lines: int
    reconnects: int
    container_id: str | None
    last_error: str = ""


class AgentSession:
    """One pod attached through one transport (implements ``Session``).

    Args:
        pod: the pod as the browser saw it.
        container: container name, or None for the first.
        transport: how to reach the node.
        read_pod: returns the pod as it is now (follows restarts); None disables following.
        node_address_of: node name -> address (the Node's InternalIP); optional.
    """

    def __init__(
        self,
        pod: PodInfo,
        container: str | None,
        transport: Transport,
        *,
        read_pod: Callable[[str, str], PodInfo] | None = None,
        node_address_of: Callable[[str], str | None] | None = None,
        extra_args: tuple[str, ...] = (),
        backoff_start: float = BACKOFF_START_S,
        backoff_max: float = BACKOFF_MAX_S,
        pod_poll_s: float = POD_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        c = select_container(pod, container)
        self.info = SessionInfo(pod=pod, container=c.name, node=pod.node, transport=transport.name)
        self._pod = pod
        self._transport = transport
        self._read_pod = read_pod
        self._node_address_of = node_address_of
        self._extra_args = extra_args
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.pod_poll_s = pod_poll_s
        self._clock = clock
        self._out: queue.Queue[Any] = queue.Queue(maxsize=20000)
        self._stop = threading.Event()
        self._restart = threading.Event()  # set when a new container ID is seen
        self._lock = threading.Lock()
        self._link: AgentLink | None = None
        self._sticky: dict[tuple[str, str], dict[str, Any]] = {}
        self._cmds: queue.Queue[Any] = queue.Queue()
        self._state = "connecting"
        self._last_frame: float | None = None
        self._frames = 0
        self._bad = 0
        self._bad_reported = 0
        self._bad_report_at = 0.0
        self._reconnects = 0
        self._last_error = ""
        self._container_id: str | None = c.container_id
        self._threads = [
            threading.Thread(target=self._supervise, daemon=True, name="session-supervisor"),
            threading.Thread(target=self._write_commands, daemon=True, name="session-commands"),
        ]
        if read_pod is not None and transport.name != "pprof-only":
            self._threads.append(
                threading.Thread(target=self._watch_pod, daemon=True, name="session-pod-poll")
            )
        for t in self._threads:
            t.start()

    # ------------------------------------------------ Session API

    def frames(self) -> Iterator[dict[str, Any]]:
        while True:
            item = self._out.get()
            if item is None:
                return
            yield item

    def send(self, command: dict[str, Any]) -> None:
        """Queue a command for the agent; returns at once."""
        if command.get("cmd") in _STICKY:
            key = (
                command["cmd"] if command["cmd"] == "set" else "collector",
                str(command.get("collector", "")),
            )
            with self._lock:
                self._sticky[key] = command
        self._cmds.put(command)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._restart.set()
        self._cmds.put(None)
        with self._lock:
            link = self._link
        if link is not None:
            link.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=20)
        self._state = "ended"
        self._out.put(None)

    def health(self) -> LinkHealth:
        last = self._last_frame
        with self._lock:
            desc = self._link.description if self._link is not None else self._transport.name
        return LinkHealth(
            state=self._state,
            description=desc,
            last_frame_age=None if last is None else max(0.0, self._clock() - last),
            frames=self._frames,
            bad_lines=self._bad,
            reconnects=self._reconnects,
            container_id=self._container_id,
            last_error=self._last_error,
        )

    # ------------------------------------------------ internals

    def _log(self, level: str, msg: str) -> None:
        self._put(make_frame("log", level=level, msg=msg, origin="console"))

    def _error(self, code: str, msg: str, hint: str, fatal: bool) -> None:
        self._put(make_frame("error", code=code, msg=msg, hint=hint, fatal=fatal, origin="console"))

    def _put(self, frame: dict[str, Any]) -> None:
        try:
            self._out.put(frame, timeout=1)
        except queue.Full:
            # Nobody is reading frames (UI frozen or gone): drop rather than stall the link.
            pass

    def _target(self) -> AgentTarget:
        pod = self._pod
        c = select_container(pod, self.info.container)
        parsed = parse_container_id(c.container_id)
        if parsed is None and self._transport.name != "pprof-only":
            raise TransportError(
                f"Container {c.name!r} of {pod.key} has no running container ID yet "
                f"(state: {c.state or 'unknown'}); waiting for it to start."
            )
        addr = None
        if pod.node and self._node_address_of is not None and self._transport.name == "ssh":
            try:
                addr = self._node_address_of(pod.node)
            except Exception as e:  # noqa: BLE001 - fall back to the node name / ssh config
                self._log("warn", describe_api_error(e, f"read node {pod.node}"))
        return AgentTarget(
            pod=pod,
            container=c,
            container_id=parsed[1] if parsed else "",
            node=pod.node,
            node_address=addr or pod.host_ip,
            extra_args=self._extra_args,
        )

    def _refresh_pod(self) -> bool:
        """Re-read the pod; True if it changed container ID."""
        if self._read_pod is None:
            return False
        try:
            pod = self._read_pod(self._pod.namespace, self._pod.name)
        except Exception as e:  # noqa: BLE001
            self._last_error = f"could not read pod {self._pod.key}: {e}"
            return False
        try:
            new = select_container(pod, self.info.container).container_id
        except ClusterError as e:
            self._last_error = str(e)
            return False
        old = self._container_id
        self._pod = pod
        self.info = replace(self.info, pod=pod, node=pod.node)
        if new and new != old:
            self._container_id = new
            return True
        return False

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True if stopped."""
        return self._stop.wait(seconds)

    def _supervise(self) -> None:
        backoff = self.backoff_start
        first = True
        while not self._stop.is_set():
            self._restart.clear()
            try:
                target = self._target()
                self._state = "connecting" if first else "reconnecting"
                self._log(
                    "info",
                    f"starting the agent for {self._pod.key} "
                    f"({self.info.container}) via {self._transport.name}",
                )
                link = self._transport.start(target)
            except (TransportError, ClusterError) as e:
                retry = getattr(e, "retry", True)
                self._last_error = str(e)
                if not retry:
                    self._error("attach_failed", str(e), "", fatal=True)
                    break
                self._log("warn", f"{e} Retrying in {backoff:g} s.")
                if self._wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)
                self._refresh_pod()
                continue
            except Exception as e:  # noqa: BLE001 - a bug in a transport must not kill the UI
                self._last_error = f"{type(e).__name__}: {e}"
                self._log(
                    "error",
                    f"attach failed unexpectedly: {self._last_error}; retrying in {backoff:g} s",
                )
                if self._wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)
                continue
            attached_cid = self._container_id
            with self._lock:
                self._link = link
                sticky = list(self._sticky.values())
            if self._stop.is_set():
                link.close()
                break
            if not first:
                self._reconnects += 1
            self._state = "attached"
            self._log("info", f"attached: {link.description}")
            for cmd in sticky:  # what the operator turned on before the link dropped
                self._write(link, cmd)
            got_frames, exited = self._pump(link)
            with self._lock:
                self._link = None
            reason = link.end_reason()
            link.close()
            if self._stop.is_set():
                break
            if got_frames:
                backoff = self.backoff_start
            first = False
            if self._restart.is_set():
                continue  # the pod poll saw a new container ID: attach to it now
            if exited:
                self._state = "following"
                self._follow_restart(attached_cid)
                continue
            self._state = "reconnecting"
            self._last_error = reason
            self._log("warn", f"link to the agent lost ({reason}); reconnecting in {backoff:g} s")
            if self._wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max)
            if self._refresh_pod():
                self._log("info", f"container restarted: new ID {self._short_id()}")
        self._state = "ended"
        self._out.put(None)

    def _short_id(self) -> str:
        parsed = parse_container_id(self._container_id)
        return parsed[1][:12] if parsed else str(self._container_id)

    def _pump(self, link: AgentLink) -> tuple[bool, bool]:
        """Read frames until the link ends or a restart is seen. Returns (got_frames, exited)."""
        got = False
        exited = False
        for line in link.lines():
            if self._stop.is_set():
                break
            try:
                frame = decode_frame(line)
            except FrameError as e:
                self._bad += 1
                now = self._clock()
                if self._bad_reported == 0 or now - self._bad_report_at >= BAD_LINE_REPORT_S:
                    n = self._bad - self._bad_reported
                    self._bad_reported = self._bad
                    self._bad_report_at = now
                    self._log(
                        "warn",
                        f"{n} unreadable line(s) from the agent skipped "
                        f"({self._bad} in all); last: {e}",
                    )
                continue
            got = True
            self._frames += 1
            self._last_frame = self._clock()
            self._put(frame)
            if frame["kind"] == "target_exit":
                exited = True
                break
            if frame["kind"] == "error" and frame.get("fatal"):
                self._last_error = str(frame.get("msg", ""))
            if self._restart.is_set():
                break
        return got, exited

    def _follow_restart(self, old: str | None) -> None:
        """The container went away: wait for the pod to show a new container ID."""
        parsed = parse_container_id(old)
        short = parsed[1][:12] if parsed else str(old)
        self._log(
            "warn", f"container {short} of {self._pod.key} exited; waiting for its replacement"
        )
        if self._read_pod is None:
            self._wait(self.backoff_start)
            return
        deadline = self._clock() + 300
        delay = 0.5
        while not self._stop.is_set() and self._clock() < deadline:
            if self._container_id != old or self._refresh_pod():
                self._log("info", f"container restarted: following new ID {self._short_id()}")
                return
            if self._wait(delay):
                return
            delay = min(delay * 1.5, 5.0)
        if not self._stop.is_set():
            self._log(
                "error",
                f"{self._pod.key} has not restarted its container in 5 minutes; still waiting",
            )

    def _watch_pod(self) -> None:
        """Notice a new container ID even when the agent missed the exit."""
        while not self._wait(self.pod_poll_s):
            if self._state != "attached":
                continue
            if self._refresh_pod():
                self._log(
                    "info", f"the pod shows a new container ID {self._short_id()}; re-attaching"
                )
                self._restart.set()
                with self._lock:
                    link = self._link
                if link is not None:
                    link.close()

    def _write(self, link: AgentLink, cmd: dict[str, Any]) -> None:
        try:
            link.write(encode(cmd).encode())
        except TransportError as e:
            self._log("warn", f"command {cmd.get('cmd')} not delivered: {e}")

    def _write_commands(self) -> None:
        while True:
            cmd = self._cmds.get()
            if cmd is None or self._stop.is_set():
                return
            with self._lock:
                link = self._link
            if link is None:
                if cmd.get("cmd") not in _STICKY:
                    self._log("warn", f"command {cmd.get('cmd')} dropped: not attached")
                continue  # sticky ones are replayed on attach
            self._write(link, cmd)


# ---------------------------------------------------------------- the factory


@dataclass
class TransportChoice:
    name: str
    why: str


def choose_transport(
    requested: str,
    node: str | None,
    *,
    is_root: bool,
    this_host: set[str],
    ssh_route: bool,
) -> TransportChoice:
    """Which transport ``auto`` means for a pod on ``node`` (pure; see module doc)."""
    if requested != "auto":
        return TransportChoice(requested, "chosen with --transport")
    if node and node in this_host:
        if is_root:
            return TransportChoice("local", f"the pod runs on this host ({node}) and we are root")
    if ssh_route:
        return TransportChoice("ssh", f"an SSH route to {node} is configured")
    # Never `pod` on its own: creating privileged pods is the operator's explicit choice.
    why = (
        "no SSH route is configured (pass --ssh-config or --ssh-user/--ssh-key, "
        "or --transport pod --agent-image IMAGE)"
    )
    if node and node in this_host and not is_root:
        why = "the pod is on this host but the console is not root, and " + why
    return TransportChoice("pprof-only", why)


def _warm_up_ssh() -> None:
    try:
        import asyncssh  # noqa: F401

        from tui.transports.bundle import agent_bundle

        agent_bundle()
    except Exception:  # noqa: BLE001 - the attach itself reports what is missing
        pass


class KubeSessionFactory:
    """Builds ``AgentSession``s from a ``KubePodSource`` (implements ``SessionFactory``)."""

    def __init__(
        self,
        source: Any,  # KubePodSource: read_pod, read_node, api_client
        transport: str = "auto",
        ssh_options: Any = None,  # tui.transports.ssh.SSHOptions
        default_container: str | None = None,
        local_python: str = "/usr/bin/python3",
        agent_args: tuple[str, ...] = (),
        agent_namespace: str = "godebug",
        agent_image: str | None = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r}; one of {', '.join(TRANSPORTS)}")
        if transport == "pod" and not agent_image:
            raise ValueError("--transport pod needs --agent-image (an image with python3 and bcc)")
        from tui.transports.ssh import SSHOptions

        self.source = source
        self.transport = transport
        self.ssh_options = ssh_options or SSHOptions()
        self.default_container = default_container
        self.local_python = local_python
        self.agent_args = agent_args
        self.agent_namespace = agent_namespace
        self.agent_image = agent_image
        self.last_choice: TransportChoice | None = None
        self._host_names: set[str] | None = None
        self._node_addresses: dict[str, tuple[float, str | None]] = {}
        if transport in ("auto", "ssh"):
            # asyncssh's import and the agent bundle's zip take a noticeable
            # moment: pay it while the operator is still choosing a pod.
            threading.Thread(target=_warm_up_ssh, daemon=True, name="ssh-warm-up").start()

    def _this_host(self) -> set[str]:
        from tui.transports.local import this_host_names

        if self._host_names is None:  # getfqdn() may ask DNS: once per console
            self._host_names = this_host_names()
        return set(self._host_names)

    def make_transport(self, pod: PodInfo) -> tuple[Transport, TransportChoice]:
        from tui.transports.local import LocalTransport, is_local_address
        from tui.transports.proxy import PprofOnlyTransport
        from tui.transports.ssh import SSHTransport

        here = self._this_host() if self.transport == "auto" else set()
        if self.transport == "auto" and pod.node and pod.node not in here:
            try:
                addr = self._node_address(pod.node)
            except Exception:  # noqa: BLE001 - no node access: decide by name only
                addr = None
            if addr and is_local_address(addr):
                here.add(pod.node)
        choice = choose_transport(
            self.transport,
            pod.node,
            is_root=os.geteuid() == 0,
            this_host=here,
            ssh_route=self.ssh_options.route_configured(pod.node),
        )
        t: Transport
        if choice.name == "local":
            t = LocalTransport(python=self.local_python)
        elif choice.name == "ssh":
            t = SSHTransport(self.ssh_options)
        elif choice.name == "pod":
            from tui.transports.pod import PodTransport

            t = PodTransport(self.source.api_client, str(self.agent_image), self.agent_namespace)
        else:
            t = PprofOnlyTransport(self.source.api_client)
        return t, choice

    def _node_address(self, name: str) -> str | None:
        """The node's InternalIP, read once a minute at most (each attach asks twice)."""
        now = time.monotonic()
        hit = self._node_addresses.get(name)
        if hit is not None and now - hit[0] < NODE_ADDRESS_TTL_S:
            return hit[1]
        addr = node_address(self.source.read_node(name))
        self._node_addresses[name] = (now, addr)
        return addr

    def prepare(self, pod: PodInfo) -> None:
        """Get ready to attach to ``pod`` (returns at once; best effort).

        Over SSH: opens the connection to its node and starts an agent there
        ahead of need, so an ``enter`` that follows skips the SSH login, the
        remote shell and Python's start-up. A pod browser may call this for
        the pod under the cursor.
        """

        def run() -> None:
            try:
                transport, choice = self.make_transport(pod)
                prepare = getattr(transport, "prepare", None)
                if choice.name != "ssh" or prepare is None or not pod.node:
                    return
                addr = self._node_address(pod.node)
                c = select_container(pod, self.default_container)
                prepare(AgentTarget(
                    pod=pod, container=c, container_id="", node=pod.node,
                    node_address=addr or pod.host_ip,
                ))  # fmt: skip
            except Exception:  # noqa: BLE001 - only a head start; attach says what is wrong
                pass

        threading.Thread(target=run, daemon=True, name="attach-prepare").start()

    def attach(self, pod: PodInfo, container: str | None = None) -> AgentSession:
        transport, choice = self.make_transport(pod)
        self.last_choice = choice
        s = AgentSession(
            pod,
            container or self.default_container,
            transport,
            read_pod=self.source.read_pod,
            node_address_of=self._node_address,
            extra_args=self.agent_args,
        )
        s._log("info", f"transport {choice.name}: {choice.why}")
        if hasattr(transport, "set_log"):
            transport.set_log(s._log)  # the pod transport says what it creates and deletes
        return s
