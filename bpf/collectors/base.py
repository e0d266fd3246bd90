"""What every collector looks like to the agent's main loop.

A collector is created once per attach, started (attaching its probes or
opening its files), polled once per interval for frames, and stopped. The
agent guarantees ``stop()`` runs on every exit path; ``stop()`` must be
idempotent and must detach everything ``start()`` attached.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

Frame = Dict[str, Any]
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

    def __init__(self, target: Any, options: Optional[Dict[str, Any]] = None, emit: Optional[Emit] = None) -> None:
        self.target = target
        self.options = dict(options or {})
        # For collectors that produce frames outside poll() (e.g. a profile
        # fetched in a worker thread). Thread-safe; set by the agent.
        self.emit = emit or (lambda frame: None)

    def start(self) -> None:
        """Attach probes / open files. Raise CollectorError on failure."""

    def poll(self) -> List[Frame]:
        """Called once per interval. Return the frames for this interval."""
        return []

    def stop(self) -> int:
        """Detach everything. Return how many probes were detached. Idempotent."""
        return 0
