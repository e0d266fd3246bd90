"""Ring-buffer time series for the panes' numbers and sparklines."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class SeriesView:
    """What a pane shows of one series at one refresh."""

    last: float | None
    rate: float | None  # change per second over the rate window; None until two points
    spark: tuple[float, ...]  # one value per bucket, oldest first, for a Sparkline
    peak: float | None


class TimeSeries:
    """Points ``(t, value)`` kept for ``horizon`` seconds, at most ``capacity`` of them.

    Args:
        horizon: seconds of history to keep (the sparkline's span).
        capacity: hard bound on stored points, so memory stays flat however fast
            frames arrive.
    """

    def __init__(self, horizon: float = 300.0, capacity: int = 4096) -> None:
        self.horizon = horizon
        self._points: deque[tuple[float, float]] = deque(maxlen=capacity)

    def add(self, t: float, value: float) -> None:
        """Append a point; points older than ``horizon`` before ``t`` are dropped."""
        if self._points and t < self._points[-1][0]:
            # Out-of-order point (clock re-sync on the agent): keep order by clamping.
            t = self._points[-1][0]
        self._points.append((t, float(value)))
        cutoff = t - self.horizon
        while self._points and self._points[0][0] < cutoff:
            self._points.popleft()

    def clear(self) -> None:
        self._points.clear()

    def __len__(self) -> int:
        return len(self._points)

    @property
    def last(self) -> float | None:
        return self._points[-1][1] if self._points else None

    @property
    def last_t(self) -> float | None:
        return self._points[-1][0] if self._points else None

    def points(self) -> list[tuple[float, float]]:
        return list(self._points)

    def rate(self, window: float = 10.0) -> float | None:
        """Change per second between the newest point and the oldest within ``window``."""
        if len(self._points) < 2:
            return None
        t1, v1 = self._points[-1]
        t0, v0 = t1, v1
        for t, v in reversed(self._points):
            if t1 - t > window:
                break
            t0, v0 = t, v
        if t1 <= t0:
            return None
        return (v1 - v0) / (t1 - t0)

    def buckets(self, span: float, count: int, now: float | None = None) -> tuple[float, ...]:
        """Resample to ``count`` buckets covering the last ``span`` seconds, for a sparkline.

        Each bucket holds the last value seen in it; empty buckets carry the
        previous bucket's value forward (a gauge holds until it changes), and
        buckets before the first point are left out (so fewer than ``count``).
        """
        if not self._points or count <= 0:
            return ()
        end = self._points[-1][0] if now is None else now
        start = end - span
        width = span / count
        out: list[float | None] = [None] * count
        for t, v in self._points:
            if t <= start:
                continue
            # Buckets are (start + i*width, start + (i+1)*width]: the newest point is last.
            i = min(count - 1, max(0, math.ceil((t - start) / width) - 1))
            out[i] = v
        filled: list[float] = []
        prev: float | None = None
        # Seed with the newest value older than the span so the line starts where it was.
        for t, v in self._points:
            if t <= start:
                prev = v
        for v in out:
            prev = prev if v is None else v
            # Buckets before the first point are left out: history starts at attach.
            if prev is not None:
                filled.append(prev)
        return tuple(filled)

    def view(
        self,
        span: float = 180.0,
        count: int = 60,
        rate_window: float = 10.0,
        now: float | None = None,
    ) -> SeriesView:
        """The pane's numbers for one refresh."""
        vals = [v for _, v in self._points]
        return SeriesView(
            last=self.last,
            rate=self.rate(rate_window),
            spark=self.buckets(span, count, now),
            peak=max(vals) if vals else None,
        )
