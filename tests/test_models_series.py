"""Time series: ring buffer bounds, rate of change, sparkline buckets."""

from __future__ import annotations

from tui.models.series import TimeSeries


def test_rate_of_change_over_window():
    s = TimeSeries()
    for i in range(30):
        s.add(1000.0 + i, 10 + 2 * i)
    assert s.rate(10) == 2.0
    assert s.last == 68


def test_rate_needs_two_points():
    s = TimeSeries()
    assert s.rate() is None
    s.add(1.0, 5)
    assert s.rate() is None


def test_horizon_and_capacity_bound_memory():
    s = TimeSeries(horizon=60, capacity=100)
    for i in range(10_000):
        s.add(float(i), i)
    assert len(s) <= 61
    s2 = TimeSeries(horizon=1e9, capacity=100)
    for i in range(10_000):
        s2.add(float(i), i)
    assert len(s2) == 100


def test_buckets_carry_gauge_forward_and_start_at_first_point():
    s = TimeSeries()
    s.add(100.0, 1)
    s.add(105.0, 5)
    b = s.buckets(span=10, count=10, now=110.0)
    # Buckets are (100,101] … (109,110]: the point at 100 seeds the line, 105 ends
    # bucket 4, and empty buckets hold the last value.
    assert b == (1, 1, 1, 1, 5, 5, 5, 5, 5, 5)
    late = TimeSeries()
    late.add(108.0, 7)
    assert late.buckets(span=10, count=10, now=110.0) == (7, 7, 7)


def test_out_of_order_point_is_clamped():
    s = TimeSeries()
    s.add(10.0, 1)
    s.add(9.0, 2)
    assert [t for t, _ in s.points()] == [10.0, 10.0]


def test_view_has_peak_and_spark():
    s = TimeSeries()
    for i, v in enumerate([3, 9, 4]):
        s.add(float(i), v)
    v = s.view(span=3, count=3)
    assert v.peak == 9 and v.last == 4 and len(v.spark) == 3
