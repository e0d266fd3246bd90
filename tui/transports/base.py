"""The transport seam: what every way of reaching a node provides."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tui.sources.base import ContainerInfo, PodInfo


class TransportError(RuntimeError):
    """The agent could not be started or reached. The message says what to do.

    ``retry`` says whether trying again later may help (a dropped connection)
    or not (a refused host key, a missing permission).
    """

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class AgentTarget:
    """What the agent is pointed at, and where."""

    pod: PodInfo
    container: ContainerInfo
    container_id: str  # bare hex, parsed from "containerd://<hex>"
    node: str | None
    node_address: str | None = None  # the Node's InternalIP
    extra_args: tuple[str, ...] = ()

    def agent_args(self) -> list[str]:
        args = ["--pod-uid", self.pod.uid, "--container-id", self.container_id]
        if self.container.name:
            args += ["--container", self.container.name]
        port = self.container.pprof_port or self.pod.pprof_port
        if port:
            args += ["--pprof-port", str(port)]
        return args + list(self.extra_args)


class AgentLink(Protocol):
    """One running agent (or stand-in): a stream of frame lines and a command pipe."""

    #: For the header and log: "ssh root@10.88.0.1 (node-1)".
    description: str

    def lines(self) -> Iterator[bytes]:
        """Blocking: each line the agent writes to stdout, until it exits or the link drops."""
        ...

    def write(self, line: bytes) -> None:
        """Send one command line. Must not block for long; may raise TransportError."""
        ...

    def close(self) -> None:
        """Stop the agent (closing its stdin makes it detach and exit) and free the link."""
        ...

    def end_reason(self) -> str:
        """After ``lines()`` ended: why, in words (exit status, stderr tail, connection lost)."""
        ...


class Transport(Protocol):
    name: str

    def start(self, target: AgentTarget) -> AgentLink:
        """Start the agent for ``target``. Raises TransportError."""
        ...


@dataclass
class StderrTail:
    """Keeps the last lines a process wrote to stderr, for error messages."""

    limit: int = 20
    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        line = line.rstrip()
        if line:
            self.lines.append(line)
            del self.lines[: -self.limit]

    def text(self, n: int = 5) -> str:
        return " | ".join(self.lines[-n:])
