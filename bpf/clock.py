"""Kernel monotonic time to wall-clock time.

eBPF programs stamp events with ``bpf_ktime_get_ns()`` (CLOCK_MONOTONIC); the
console wants wall-clock time. The offset between the two clocks is measured
at start and re-measured periodically (NTP may step or slew the wall clock).
"""

from __future__ import annotations

import threading
import time

#: How often the agent re-measures the offset.
REMEASURE_S = 10.0


def measure_offset(tries: int = 5) -> tuple[int, int]:
    """Measure ``realtime - monotonic`` in ns.

    Reads the monotonic clock on both sides of a realtime read, a few times,
    and keeps the reading whose bracket is narrowest: that one was least
    disturbed by preemption between the reads.

    Returns:
        ``(offset_ns, uncertainty_ns)``: the offset and the bracket width.
    """
    best: tuple[int, int] | None = None
    for _ in range(max(1, tries)):
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        r = time.clock_gettime_ns(time.CLOCK_REALTIME)
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        gap = m1 - m0
        offset = r - (m0 + gap // 2)
        if best is None or gap < best[1]:
            best = (offset, gap)
    assert best is not None
    return best


class Clock:
    """Converts monotonic ns to wall-clock ns with a measured, refreshed offset."""

    def __init__(self, remeasure_s: float = REMEASURE_S) -> None:
        self._lock = threading.Lock()
        self.remeasure_s = remeasure_s
        self.offset_ns, self.uncertainty_ns = measure_offset()
        self._measured_at = time.monotonic()

    def remeasure(self) -> int:
        """Measure the offset again; returns the new offset."""
        offset, gap = measure_offset()
        with self._lock:
            self.offset_ns, self.uncertainty_ns = offset, gap
            self._measured_at = time.monotonic()
        return offset

    def maybe_remeasure(self) -> bool:
        """Re-measure when the last measurement is older than ``remeasure_s``."""
        if time.monotonic() - self._measured_at >= self.remeasure_s:
            self.remeasure()
            return True
        return False

    def wall_from_mono(self, mono_ns: int) -> int:
        """Wall-clock ns for a CLOCK_MONOTONIC timestamp (e.g. bpf_ktime_get_ns)."""
        with self._lock:
            return int(mono_ns) + self.offset_ns

    @staticmethod
    def mono_ns() -> int:
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC)

    def now_ns(self) -> int:
        """Wall-clock now, from the monotonic clock through the offset, so that
        frames stamped by collectors and from kernel times agree."""
        return self.wall_from_mono(self.mono_ns())
