"""When the live console asks the agent for pprof profiles.

The lock-contention, channel-wait, GC and leak-stack findings need goroutine,
mutex, block and heap profiles, which the agent fetches only on a ``profile``
command. ``ProfileSchedule`` decides when to send those commands: once the
agent said hello (and did not say pprof is unavailable), one request per kind,
then again every ``every_s`` seconds; never two requests of one kind in
flight; and no more requests after an error that says pprof cannot be reached.

Pure logic: no Textual, no I/O. ``observe`` is called on the frame reader
thread and ``due`` on the refresh thread, so state is under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from bpf import schema

KINDS = ("goroutine", "mutex", "block", "heap")
EVERY_S = 30.0
# An answer that never comes (agent restarted, frame lost) must not block a kind forever.
ANSWER_TIMEOUT_S = 60.0
# Error codes after which asking again is pointless (bpf/collectors/goroutines.pprof_error,
# bpf/agent.py).
UNREACHABLE = frozenset({"no_pprof", "no_profiles", "not_go", "netns"})


class ProfileSchedule:
    """Which ``profile`` commands are due, given the frames seen so far.

    Args:
        kinds: the profile kinds to request.
        every_s: seconds between two requests of one kind.
        timeout_s: a request unanswered this long no longer counts as in flight.
    """

    def __init__(
        self,
        kinds: tuple[str, ...] = KINDS,
        every_s: float = EVERY_S,
        timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self.kinds = kinds
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.state = "waiting"  # waiting (no hello yet) | active | stopped
        self.reason = ""
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}  # kind -> when last requested
        self._inflight: dict[str, str] = {}  # request id -> kind
        self._seq = 0

    def observe(self, frame: Mapping[str, Any]) -> None:
        """Learn from one frame of the session (hello, profile, error)."""
        kind = frame.get("kind")
        with self._lock:
            if kind == "hello":
                self._on_hello(frame)
            elif kind == "profile":
                self._answered(frame)
            elif kind == "error":
                self._answered(frame)
                code = str(frame.get("code") or "")
                about_profiles = frame.get("id") in self._ids() or frame.get("collector") in (
                    "profiles",
                    "goroutines",
                    None,
                )
                if code in UNREACHABLE and about_profiles and self.state != "stopped":
                    self.state = "stopped"
                    self.reason = str(frame.get("msg") or code)

    def _ids(self) -> set[str]:
        return set(self._inflight)

    def _on_hello(self, frame: Mapping[str, Any]) -> None:
        if self.state == "stopped":
            return
        profiles = frame.get("profiles")
        if isinstance(profiles, Mapping):
            if profiles.get("available") is False:
                self.state = "stopped"
                self.reason = "the agent says pprof profiles are unavailable for this target"
                return
            offered = profiles.get("kinds")
            if isinstance(offered, (list, tuple)):
                self.kinds = tuple(k for k in self.kinds if k in offered)
        self.state = "active"
        # A new hello is a new agent: nothing it was asked before will be answered.
        self._inflight.clear()
        self._last.clear()

    def _answered(self, frame: Mapping[str, Any]) -> None:
        req = frame.get("id")
        if isinstance(req, str) and req in self._inflight:
            del self._inflight[req]

    def in_flight(self) -> tuple[str, ...]:
        """The kinds requested and not answered yet."""
        with self._lock:
            return tuple(sorted(self._inflight.values()))

    def due(self, now: float) -> list[dict[str, Any]]:
        """The commands to send now (marks them in flight)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            if self.state != "active":
                return out
            busy = set(self._inflight.values())
            for kind in self.kinds:
                last = self._last.get(kind)
                if kind in busy:
                    if last is not None and now - last < self.timeout_s:
                        continue
                    # Timed out: forget the old request, ask again.
                    self._inflight = {r: k for r, k in self._inflight.items() if k != kind}
                if last is not None and now - last < self.every_s:
                    continue
                self._seq += 1
                req = f"console-{kind}-{self._seq}"
                self._inflight[req] = kind
                self._last[kind] = now
                # seconds 0: mutex/block/heap come back cumulative (bpf profile_path);
                # the findings engine diffs two successive heap profiles itself.
                out.append(schema.make_command("profile", id=req, profile=kind, seconds=0))
        return out
