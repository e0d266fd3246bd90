"""Replay a recording (``tui.record``) as a live Session, on the recording's clock.

``ReplaySession`` hands out the recorded frames at the pace they were
recorded (times ``speed``), and can be paused, resumed and moved: ``pause()``,
``resume()``, ``toggle_pause()``, ``seek(seconds_from_start)``,
``seek_by(delta_s)``, ``set_speed(x)``. Seeking forward delivers the skipped
frames at once (the views catch up); seeking backward starts over from the
first frame and first sends a ``log`` frame with ``"replay": "reset"`` so the
console can clear its models before the frames up to the target arrive.
``ReplayClock`` is the recording's wall clock at the replay cursor, so
"seconds ago" and staleness read as they did when it was recorded.
Nothing here imports Textual.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bpf import schema
from tui.record import Recording
from tui.sources.base import PodInfo, SessionInfo

NS = 1_000_000_000


class ReplaySession:
    """Implements ``Session`` over a ``Recording``.

    Args:
        recording: what to replay.
        speed: 1.0 = as recorded; ``None`` or 0 = as fast as possible.
        hold_open: after the last frame keep the stream open (the console then
            shows the end state) until ``close()``.
        monotonic: the clock pacing uses (tests pass a fake).
    """

    def __init__(
        self,
        recording: Recording,
        speed: float | None = 1.0,
        hold_open: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        info: SessionInfo | None = None,
    ) -> None:
        self.recording = recording
        self.info = info or recording.session_info()
        self._frames = recording.frames
        self._speed = speed or 0.0
        self.hold_open = hold_open
        self._mono = monotonic
        self._cond = threading.Condition()
        self._closed = False
        self._paused = False
        self._i = 0
        self._cursor_ns = self.start_ns
        self._base_ns = self.start_ns
        self._base_mono = monotonic()
        self._ff_until: int | None = None
        self._reset_pending = False
        self.sent: list[dict[str, Any]] = []

    # --- position ---------------------------------------------------------------------

    @property
    def start_ns(self) -> int:
        if self._frames:
            return min(self.recording.start_ns, int(self._frames[0]["t"]))
        return self.recording.start_ns

    @property
    def end_ns(self) -> int:
        return int(self._frames[-1]["t"]) if self._frames else self.start_ns

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / NS

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def finished(self) -> bool:
        return self._i >= len(self._frames)

    def now_ns(self) -> int:
        """The recording's wall-clock time at the replay cursor."""
        with self._cond:
            if self._paused or not self._speed or self.finished:
                return self._cursor_ns
            t = self._base_ns + int((self._mono() - self._base_mono) * self._speed * NS)
            nxt = int(self._frames[self._i]["t"])
            return max(self._cursor_ns, min(t, nxt))

    @property
    def position_s(self) -> float:
        return (self.now_ns() - self.start_ns) / NS

    # --- control ----------------------------------------------------------------------

    def _rebase(self) -> None:
        self._base_ns = self._cursor_ns
        self._base_mono = self._mono()

    def pause(self) -> None:
        with self._cond:
            if not self._paused:
                self._cursor_ns = self._now_unlocked()
                self._paused = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            if self._paused:
                self._paused = False
                self._rebase()
            self._cond.notify_all()

    def toggle_pause(self) -> bool:
        """Pause or resume; returns whether it is now paused."""
        if self._paused:
            self.resume()
        else:
            self.pause()
        return self._paused

    def set_speed(self, speed: float | None) -> None:
        with self._cond:
            self._cursor_ns = self._now_unlocked()
            self._speed = speed or 0.0
            self._rebase()
            self._cond.notify_all()

    def seek(self, seconds: float) -> None:
        """Move the cursor to ``seconds`` after the recording's start (clamped)."""
        target = self.start_ns + int(max(0.0, min(seconds, self.duration_s)) * NS)
        with self._cond:
            if target < self._cursor_ns:
                self._i = 0
                self._reset_pending = True
            self._ff_until = target
            self._cursor_ns = target
            self._rebase()
            self._cond.notify_all()

    def seek_by(self, delta_s: float) -> None:
        self.seek(self.position_s + delta_s)

    def _now_unlocked(self) -> int:
        if self._paused or not self._speed or self._i >= len(self._frames):
            return self._cursor_ns
        t = self._base_ns + int((self._mono() - self._base_mono) * self._speed * NS)
        return max(self._cursor_ns, min(t, int(self._frames[self._i]["t"])))

    # --- Session ----------------------------------------------------------------------

    def frames(self) -> Iterator[dict[str, Any]]:
        while True:
            with self._cond:
                if self._closed:
                    return
                if self._reset_pending:
                    self._reset_pending = False
                    out: dict[str, Any] | None = schema.make_frame(
                        "log", t=self._cursor_ns, level="info",
                        msg="replay: jumped back; the views restart from the beginning",
                        replay="reset", origin="console")
                elif self._i >= len(self._frames):
                    if not self.hold_open:
                        return
                    self._cond.wait(0.1)
                    continue
                else:
                    f = self._frames[self._i]
                    t = int(f["t"])
                    ff = self._ff_until is not None and t <= self._ff_until
                    if not ff:
                        if self._ff_until is not None:
                            self._ff_until = None
                            self._rebase()
                        if self._paused:
                            self._cond.wait(0.1)
                            continue
                        if self._speed:
                            due = self._base_mono + (t - self._base_ns) / NS / self._speed
                            wait = due - self._mono()
                            if wait > 0:
                                self._cond.wait(min(wait, 0.1))
                                continue
                    self._i += 1
                    self._cursor_ns = max(self._cursor_ns, t) if not ff else self._cursor_ns
                    if not ff and not self._speed:
                        self._base_ns = self._cursor_ns
                    out = f
            if out is not None:
                yield out

    def send(self, command: dict[str, Any]) -> None:
        """A recording cannot take commands; say so once per kind."""
        kind = command.get("cmd")
        first = all(c.get("cmd") != kind for c in self.sent)
        self.sent.append(command)
        if first and kind in ("enable", "disable", "profile", "set"):
            # Shown in the log pane; the frames already hold what was recorded.
            self._inject(schema.make_frame(
                "log", t=self._cursor_ns, level="info", origin="console",
                msg=f"replay: '{kind}' has no effect on a recording; it shows what was recorded"))

    def _inject(self, frame: dict[str, Any]) -> None:
        with self._cond:
            self._frames = list(self._frames)
            self._frames.insert(self._i, frame | {"t": max(self._cursor_ns, frame["t"])})
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class ReplayClock:
    """The ``Clock`` seam on the replay cursor (wall-clock seconds of the recording)."""

    def __init__(self, factory: ReplaySessionFactory) -> None:
        self.factory = factory

    def now(self) -> float:
        s = self.factory.current
        if s is None:
            return self.factory.recording.start_ns / NS
        return s.now_ns() / NS


class ReplaySessionFactory:
    """Attaching to the recorded pod starts a replay (a fresh one each time)."""

    def __init__(self, recording: Recording, speed: float | None = 1.0,
                 start_s: float = 0.0, paused: bool = False) -> None:
        self.recording = recording
        self.speed = speed
        self.start_s = start_s
        self.paused = paused
        self.current: ReplaySession | None = None

    @property
    def pod(self) -> PodInfo:
        return self.recording.pod

    def attach(self, pod: PodInfo, container: str | None = None) -> ReplaySession:
        s = ReplaySession(self.recording, speed=self.speed)
        if self.start_s:
            s.seek(self.start_s)
        if self.paused:
            s.pause()
        self.current = s
        return s
