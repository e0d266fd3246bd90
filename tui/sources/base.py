"""The seams between the console and the world: where pods and frames come from.

The App is given a ``PodSource``, a ``SessionFactory`` and a ``Clock``. The real
ones talk to the Kubernetes API and ship the agent to a node; recorded ones
replay files, so tests and ``replay`` run the same App. Nothing here imports
Textual. Blocking calls (``events()``, ``Session.frames()``) run in thread
workers; they never run on the UI's event loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    image: str
    container_id: str | None = None  # "containerd://<64 hex>" as in the pod status
    ready: bool = False
    restarts: int = 0
    state: str = ""  # running | waiting:<Reason> | terminated:<Reason>
    pprof_port: int | None = None  # a declared containerPort named pprof / port 6060


@dataclass(frozen=True)
class PodInfo:
    """One row of the pod browser, built from a V1Pod by pure code."""

    namespace: str
    name: str
    uid: str
    status: str  # what kubectl's STATUS column would say
    ready: str  # "1/1"
    restarts: int
    created: float  # wall-clock seconds
    node: str | None
    cpu_limit: str | None  # "500m", None when unlimited
    pprof_port: int | None
    pod_ip: str | None = None
    host_ip: str | None = None
    containers: tuple[ContainerInfo, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PodEvent:
    """ADDED, MODIFIED, DELETED carry a pod; RESET carries the full list after a
    (re-)list; STATUS carries a message for the header (e.g. reconnecting)."""

    type: str
    pod: PodInfo | None = None
    pods: tuple[PodInfo, ...] = ()
    message: str = ""


class PodSource(Protocol):
    def events(self, namespace: str | None, selector: str | None) -> Iterator[PodEvent]:
        """Blocking stream: a RESET first, then changes, until ``stop()``.
        ``namespace=None`` means all namespaces."""
        ...

    def stop(self) -> None: ...

    def contexts(self) -> list[str]: ...

    def use_context(self, name: str) -> None: ...

    @property
    def current_context(self) -> str: ...


@dataclass(frozen=True)
class SessionInfo:
    pod: PodInfo
    container: str
    node: str | None
    transport: str  # local | ssh | pod | pprof-only | replay


class Session(Protocol):
    info: SessionInfo

    def frames(self) -> Iterator[dict[str, Any]]:
        """Blocking stream of decoded frames (bpf.schema) until the session ends.
        The transport adds its own ``log``/``error`` frames about the link
        (connecting, dropped, re-attached, container restarted); a ``log`` frame
        may carry ``link`` (connecting|live|reconnecting|dropped) for the header.
        Lines that fail to decode are not yielded: the session counts them in an
        ``unparsed`` int attribute, which the header shows."""
        ...

    def send(self, command: dict[str, Any]) -> None:
        """Send a command (bpf.schema.make_command). Never blocks the caller."""
        ...

    def close(self) -> None: ...


class SessionFactory(Protocol):
    def attach(self, pod: PodInfo, container: str | None = None) -> Session: ...


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()
