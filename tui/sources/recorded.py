"""Pods and frames from files: the same seams as the cluster, for tests and the dev entry.

``RecordedPodSource`` serves a fixed list of pods per context (and lets a test
push watch events); ``RecordedSession`` replays a JSONL file of frames, either
as fast as possible or paced by the frames' own timestamps through an injected
sleep. Nothing here imports Textual.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bpf import schema
from tui.sources.base import ContainerInfo, PodEvent, PodInfo, SessionInfo


class FixedClock:
    """A clock that only moves when told to: snapshots and tests stay deterministic."""

    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class ReplayClock:
    """The clock of a recording: it reads ``start`` when (re)started, then runs at ``speed``.

    Args:
        start: wall-clock seconds of the recording's first frame.
        speed: how fast the recording is replayed.
        monotonic: the real clock it runs on (tests pass a fake).
    """

    def __init__(
        self, start: float, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.speed = speed
        self._monotonic = monotonic
        self.restart(start)

    def restart(self, start: float) -> None:
        self.start = start
        self._origin = self._monotonic()

    def now(self) -> float:
        return self.start + (self._monotonic() - self._origin) * self.speed


def pod_from_dict(d: Mapping[str, Any]) -> PodInfo:
    """A PodInfo from the JSON shape the recordings use (PodInfo's own field names)."""
    containers = tuple(ContainerInfo(**c) for c in d.get("containers", ()))
    fields = {k: v for k, v in d.items() if k != "containers"}
    fields["labels"] = dict(fields.get("labels") or {})
    return PodInfo(containers=containers, **fields)


def pod_to_dict(p: PodInfo) -> dict[str, Any]:
    d = {k: getattr(p, k) for k in PodInfo.__dataclass_fields__}
    d["containers"] = [dict(c.__dict__) for c in p.containers]
    d["labels"] = dict(p.labels)
    return d


def load_pods(path: str | Path) -> dict[str, list[PodInfo]]:
    """Read ``{"contexts": {name: [pod, ...]}}`` (or a bare list for one context)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, list):
        data = {"contexts": {"recorded": data}}
    return {name: [pod_from_dict(p) for p in pods] for name, pods in data["contexts"].items()}


class RecordedPodSource:
    """A PodSource over fixed pod lists, one per context.

    Args:
        contexts: pods per context name; the first is current.
        status: message of the initial RESET (what the header shows).
    """

    def __init__(
        self, contexts: Mapping[str, Iterable[PodInfo]] | Iterable[PodInfo], status: str = ""
    ) -> None:
        if not isinstance(contexts, Mapping):
            contexts = {"recorded": list(contexts)}
        self._contexts = {k: list(v) for k, v in contexts.items()}
        self._current = next(iter(self._contexts))
        self._status = status
        self._events: queue.Queue[PodEvent | None] = queue.Queue()
        self._stopped = threading.Event()
        self.calls: list[tuple[str | None, str | None]] = []

    @property
    def current_context(self) -> str:
        return self._current

    def contexts(self) -> list[str]:
        return list(self._contexts)

    def use_context(self, name: str) -> None:
        if name not in self._contexts:
            raise KeyError(
                f"no context named {name!r}: known contexts are {', '.join(self._contexts)}"
            )
        self._current = name

    def push(self, event: PodEvent) -> None:
        """Deliver a watch event to the running ``events()`` stream (tests)."""
        self._events.put(event)

    def pods(self, namespace: str | None) -> list[PodInfo]:
        return [
            p
            for p in self._contexts[self._current]
            if namespace is None or p.namespace == namespace
        ]

    def events(self, namespace: str | None, selector: str | None) -> Iterator[PodEvent]:
        self.calls.append((namespace, selector))
        self._stopped.clear()
        # Drop events pushed for an earlier stream.
        while not self._events.empty():
            self._events.get_nowait()
        pods = [p for p in self.pods(namespace) if _selected(p, selector)]
        yield PodEvent("RESET", pods=tuple(pods), message=self._status)
        while not self._stopped.is_set():
            try:
                ev = self._events.get(timeout=0.05)
            except queue.Empty:
                continue
            if ev is None:
                return
            if ev.pod is not None and namespace is not None and ev.pod.namespace != namespace:
                continue
            yield ev

    def stop(self) -> None:
        self._stopped.set()
        self._events.put(None)


def _selected(pod: PodInfo, selector: str | None) -> bool:
    """Equality-based label selectors (``a=b,c!=d``), enough for recordings."""
    if not selector:
        return True
    for term in selector.split(","):
        term = term.strip()
        if "!=" in term:
            k, v = term.split("!=", 1)
            if pod.labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if pod.labels.get(k.strip().rstrip("=")) != v.strip():
                return False
        elif term and term not in pod.labels:
            return False
    return True


def read_frames(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    """Decode a JSONL recording. Returns the frames and how many lines were not frames."""
    frames, bad = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                frames.append(schema.decode_frame(line))
            except schema.FrameError:
                bad += 1
    return frames, bad


class RecordedSession:
    """A Session that replays frames.

    Args:
        info: what the header shows.
        frames: decoded frames, in order.
        speed: ``None`` replays as fast as possible; otherwise the gaps between
            frame timestamps are slept, divided by ``speed``.
        sleep: the sleep function (tests pass a fake).
        hold_open: after the last frame, keep the stream open until ``close()``
            (a live session does), instead of ending it.
        unparsed: lines of the recording that were not frames.
    """

    def __init__(
        self,
        info: SessionInfo,
        frames: list[dict[str, Any]],
        speed: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        hold_open: bool = True,
        unparsed: int = 0,
    ) -> None:
        self.info = info
        self._frames = frames
        self.speed = speed
        self._sleep = sleep
        self.hold_open = hold_open
        self.unparsed = unparsed
        self.sent: list[dict[str, Any]] = []
        self._closed = threading.Event()
        self._injected: queue.Queue[dict[str, Any]] = queue.Queue()

    def inject(self, frame: dict[str, Any]) -> None:
        """Add a frame to the stream as if the agent had sent it (tests)."""
        self._injected.put(frame)

    def _drain(self) -> Iterator[dict[str, Any]]:
        while True:
            try:
                yield self._injected.get_nowait()
            except queue.Empty:
                return

    def frames(self) -> Iterator[dict[str, Any]]:
        prev_t: int | None = None
        for f in self._frames:
            if self._closed.is_set():
                return
            if self.speed and prev_t is not None and f["t"] > prev_t:
                # Sleep in slices so close() is noticed within 0.1 s.
                remaining = (f["t"] - prev_t) / 1e9 / self.speed
                while remaining > 0 and not self._closed.is_set():
                    step = min(0.1, remaining)
                    self._sleep(step)
                    remaining -= step
            prev_t = f["t"]
            yield from self._drain()
            yield f
        while self.hold_open and not self._closed.is_set():
            try:
                yield self._injected.get(timeout=0.05)
            except queue.Empty:
                continue
        yield from self._drain()

    def send(self, command: dict[str, Any]) -> None:
        """Record the command; answer enable/disable like the agent would."""
        self.sent.append(command)
        if command.get("cmd") in ("enable", "disable"):
            state = "on" if command["cmd"] == "enable" else "off"
            last = self._frames[-1]["t"] if self._frames else schema.now_ns()
            self.inject(
                schema.make_frame(
                    "collector",
                    t=last,
                    name=command["collector"],
                    state=state,
                    reason="enabled by the console" if state == "on" else "disabled by the console",
                )
            )

    def close(self) -> None:
        self._closed.set()


class RecordedSessionFactory:
    """Attach to any pod by replaying its recording (or the default one).

    Args:
        recordings: JSONL path per pod key ``namespace/name``; ``"*"`` for any pod.
        speed, sleep, hold_open: passed to each ``RecordedSession``.
        clock: a ReplayClock restarted at the recording's first frame on attach.
    """

    def __init__(
        self,
        recordings: Mapping[str, str | Path],
        speed: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        hold_open: bool = True,
        clock: ReplayClock | None = None,
    ) -> None:
        self.recordings = dict(recordings)
        self.clock = clock
        self.speed = speed
        self.sleep = sleep
        self.hold_open = hold_open
        self.sessions: list[RecordedSession] = []

    def attach(self, pod: PodInfo, container: str | None = None) -> RecordedSession:
        path = self.recordings.get(pod.key) or self.recordings.get("*")
        if path is None:
            raise LookupError(f"no recording for pod {pod.key}: record one with --record first")
        frames, bad = read_frames(path)
        if self.clock is not None and frames:
            self.clock.restart(frames[0]["t"] / 1e9)
        name = container or (pod.containers[0].name if pod.containers else "")
        info = SessionInfo(pod=pod, container=name, node=pod.node, transport="replay")
        s = RecordedSession(
            info, frames, speed=self.speed, sleep=self.sleep, hold_open=self.hold_open, unparsed=bad
        )
        self.sessions.append(s)
        return s


def with_status(pod: PodInfo, **changes: Any) -> PodInfo:
    """A copy of ``pod`` with fields changed (tests build MODIFIED events with it)."""
    return replace(pod, **changes)
