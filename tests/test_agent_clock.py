"""Monotonic-to-wall conversion against the system clocks."""

from __future__ import annotations

import time

from bpf.clock import Clock, measure_offset


def test_offset_matches_the_system_clocks() -> None:
    offset, gap = measure_offset()
    ref = time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    assert gap < 1_000_000
    assert abs(offset - ref) < 2_000_000  # NTP slews far slower than this


def test_wall_from_mono_and_remeasure() -> None:
    c = Clock(remeasure_s=0.0)
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    wall = time.time_ns()
    assert abs(c.wall_from_mono(mono) - wall) < 2_000_000
    assert abs(c.now_ns() - time.time_ns()) < 2_000_000
    assert c.maybe_remeasure() is True  # due immediately with remeasure_s=0
    assert Clock(remeasure_s=3600).maybe_remeasure() is False
