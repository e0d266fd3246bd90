"""What every collector looks like to the agent's main loop.

A collector is created once per attach, started (attaching its probes or
opening its files), polled once per interval for frames, and stopped. The
agent guarantees ``stop()`` runs on every exit path; ``stop()`` must be
idempotent and must detach everything ``start()`` attached.

Discovery: the agent imports ``bpf.collectors.<name>`` for each name in
``bpf.schema.COLLECTORS`` and takes the module's ``COLLECTOR`` attribute (the
class), or else the one ``Collector`` subclass whose ``name`` is ``<name>``.
Modules must not import bcc at import time (only in ``start()``), so the
agent can list them even where bcc is missing.

Options the agent passes (``self.options``): ``hz`` (int), ``interval``
(seconds, float), ``pprof_port`` (int), ``clock`` (a ``bpf.clock.Clock``:
``clock.wall_from_mono(ns)`` turns ``bpf_ktime_get_ns()`` into frame time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Frame = dict[str, Any]
Emit = Callable[[Frame], None]


class CollectorError(Exception):
    """A collector could not start or keep running. ``code`` is stable (it
    becomes an ``error`` frame's code); ``hint`` says what the operator can do."""

    def __init__(self, code: str, msg: str, hint: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.hint = hint


class Collector:
    """Base class. Subclasses set the class attributes and override the methods."""

    #: Name used in commands and frames (one of bpf.schema.COLLECTORS).
    name: str = ""
    #: What it costs, in words an operator can weigh during an incident.
    cost: str = ""
    #: Whether the agent starts it without being asked.
    default_on: bool = False
    #: Whether it needs bcc (the agent reports it unavailable when bcc is missing).
    needs_bcc: bool = False
    #: Whether it only works on a Go binary (uprobes on runtime functions, pprof).
    needs_go: bool = False

    def __init__(
        self, target: Any, options: dict[str, Any] | None = None, emit: Emit | None = None
    ) -> None:
        self.target = target
        self.options = dict(options or {})
        # For collectors that produce frames outside poll() (e.g. a profile
        # fetched in a worker thread). Thread-safe; set by the agent.
        self.emit = emit or (lambda frame: None)

    def start(self) -> None:
        """Attach probes / open files. Raise CollectorError on failure."""

    def poll(self) -> list[Frame]:
        """Called once per interval. Return the frames for this interval."""
        return []

    def stop(self) -> int:
        """Detach everything. Return how many probes were detached. Idempotent."""
        return 0

    def configure(self, changes: dict[str, Any]) -> bool:
        """Apply changed options (``hz``, ``interval``) while running.

        Returns True when the collector needs a restart (stop + start) for
        them to take effect; the agent then restarts it.
        """
        self.options.update(changes)
        return False

    def ebpf_text(self) -> str:
        """The generated eBPF C for this target (printed by the agent's hidden
        ``--ebpf``); empty for collectors without eBPF."""
        return ""

    @classmethod
    def unavailable_reason(cls, target: Any) -> str | None:
        """Why this collector cannot run on this target at all (None: it can).

        Checked before ``start()``; e.g. a Go-only collector on a non-Go binary.
        """
        if cls.needs_go and target is not None and getattr(target, "is_go", None) is False:
            return "the target is not a Go program"
        return None

    def clock_now_ns(self) -> int:
        """Wall-clock now through the agent's clock (or the system clock)."""
        clock = self.options.get("clock")
        return clock.now_ns() if clock is not None else time.time_ns()
