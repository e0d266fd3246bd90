"""Session snapshots built from the recorded frames (pure model, no Textual)."""

from __future__ import annotations

from pathlib import Path

from bpf import schema
from tui.models.session_state import SessionModel, hist_label, quota_text
from tui.sources.recorded import read_frames

DATA = Path(__file__).parent / "data"


def model_of(name: str, **kw) -> tuple[SessionModel, float]:
    frames, bad = read_frames(DATA / f"{name}.jsonl")
    assert bad == 0
    m = SessionModel(pod=name, namespace="demo", transport="replay", **kw)
    m.add_many(frames)
    return m, frames[-1]["t"] / 1e9


def test_leak_recording_shows_rising_goroutines():
    m, end = model_of("leak")
    s = m.snapshot(end + 1)
    assert s.goroutines.count > 150
    assert s.goroutines.rate is not None and s.goroutines.rate > 1.0
    assert s.goroutines.spark[-1] > s.goroutines.spark[0]
    assert s.header.link == "live" and s.header.data_age == 1.0


def test_cpu_recording_shows_throttling_and_quota():
    m, end = model_of("cpu")
    s = m.snapshot(end)
    assert s.throttle.container.share is not None and s.throttle.container.share > 0.5
    assert s.throttle.container.throttled_ms_per_s > 500
    assert s.throttle.container.quota.startswith("0.20 CPU")
    assert s.calltree.top[0].name == "main.fib"
    assert s.calltree.source_label == "physical frames (eBPF)"


def test_mutex_recording_hot_function_and_futex():
    m, end = model_of("mutex")
    s = m.snapshot(end)
    assert s.calltree.hot_path[-1][-1] == "main.checksumAll"
    assert s.futex.state == "on" and s.futex.waits_per_s > 1000
    assert s.futex.hist[0][0] == "≥8 µs"
    assert any("mutex profile is empty" in line.text for line in s.log)


def test_futex_is_off_with_its_cost_until_enabled():
    frames, _ = read_frames(DATA / "cpu.jsonl")
    m = SessionModel()
    m.add_many(frames)
    s = m.snapshot(frames[-1]["t"] / 1e9)
    assert s.futex.state == "off"
    assert "every syscall on the node" in s.futex.cost


def test_stale_and_ended_link():
    m, end = model_of("cpu")
    assert m.snapshot(end + 30).header.link == "stale"
    m.end("the recording ran out")
    h = m.snapshot(end + 30).header
    assert h.link == "ended" and "recording" in h.link_detail


def test_bad_frames_are_counted_not_raised():
    m = SessionModel()
    m.add({"kind": "nonsense", "t": 1})
    m.add(schema.make_frame("cpu_stacks", t=1, interval_ns=1, hz=99, samples=1, lost=0,
                            funcs=["a"], stacks=[[1, [5]]]))
    m.add(schema.make_frame("throttle", t=2, interval_ns="x", cgroup_version="v2",
                            container=None, pod=None))
    s = m.snapshot(10)
    assert s.header.unparsed == 3


def test_transport_link_marks_and_hostile_log_text():
    m = SessionModel()
    m.add(schema.make_frame("log", t=10**9, level="warn",
                            msg="ssh dropped [bold]x\x1b[2J", link="reconnecting"))
    s = m.snapshot(1.0)
    assert s.header.link == "reconnecting"
    assert s.log[-1].text == "ssh dropped [bold]x"


def test_findings_from_engine_objects_and_dicts():
    calls = []

    def engine(frames):
        calls.append(len(frames))
        return [{"id": "X1", "severity": "warning", "title": "Leak [red]", "evidence": ["a"],
                 "pane": "goroutines", "next": "look"},
                {"id": "X0", "severity": "critical", "title": "Throttled", "path": ["a", "b"]}]

    m, end = model_of("leak", findings_engine=engine)
    m.evaluate_findings()
    s = m.snapshot(end)
    assert calls and calls[0] > 100
    assert [f.id for f in s.findings] == ["X0", "X1"]  # critical first
    assert s.findings[1].title == "Leak [red]" and s.findings[1].next_step == "look"
    assert s.findings[0].path == ("a", "b")


def test_incremental_findings_engine_is_fed_once_per_frame():
    from tui.findings import FindingsEngine

    m, end = model_of("cpu", findings_engine=FindingsEngine())
    m.evaluate_findings()
    s = m.snapshot(end)
    assert s.findings and s.findings[0].severity == "critical"
    assert s.findings[0].pane == "throttle"


def test_helpers():
    assert quota_text(-1, 100000) == ("no limit", False)
    assert quota_text(50000, 100000)[0] == "0.50 CPU (50 ms per 100 ms)"
    assert hist_label(0) == "≥1 µs" and hist_label(11) == "≥2.0 ms"


def test_replay_jump_back_resets_everything():
    m, end = model_of("leak")
    assert m.snapshot(end).goroutines.count > 150
    m.add(schema.make_frame("log", t=int((end - 80) * 1e9), level="info",
                            msg="replay: jumped back", replay="reset"))
    m.add(schema.make_frame("goroutines", t=int((end - 79) * 1e9), count=20, source="pprof_index"))
    s = m.snapshot(end - 79)
    assert s.goroutines.count == 20 and s.goroutines.peak == 20
    assert s.calltree.total == 0
    assert s.log[-1].text == "replay: jumped back"


def _throttle(t: float, periods: int, throttled: int, throttled_ms: int) -> dict:
    cg = {
        "nr_periods": periods,
        "nr_throttled": throttled,
        "throttled_ns": throttled_ms * 1_000_000,
        "usage_ns": 200_000_000,
        "quota_us": 20000,
        "period_us": 100000,
    }
    return schema.make_frame(
        "throttle", t=int(t * 1e9), interval_ns=10**9, cgroup_version="v2", container=cg, pod=cg
    )


def test_throttle_window_averages_beside_a_quiet_last_interval():
    # A bursty service: every 5th second all 10 periods throttled, quiet between.
    m = SessionModel()
    for sec in range(1, 121):
        burst = sec % 5 == 0
        m.add(_throttle(1000 + sec, 10, 10 if burst else 0, 800 if burst else 0))
    m.add(_throttle(1121, 10, 0, 0))  # the last interval: between bursts
    th = m.snapshot(1121).throttle
    assert th.container.share == 0.0 and th.container.throttled_ms_per_s == 0.0
    assert th.interval_s == 1.0
    (s10, c10, p10), (s60, c60, p60) = th.windows
    assert (s10, s60) == (10, 60)
    # 2 bursts in the last 10 intervals, 12 in the last 60: 20 % of periods either way.
    assert c10.share == 0.2 and p10.share == 0.2
    assert c60.share == 12 * 10 / 600
    assert c10.throttled_ms_per_s == 2 * 800 / 10
    assert abs(c60.throttled_ms_per_s - 12 * 800 / 60) < 1e-9
    assert abs(c60.usage_cores - 0.2) < 1e-9


def test_throttle_window_averages_without_data_are_unknown():
    m = SessionModel()
    m.add(schema.make_frame("goroutines", t=10**9, count=3, source="pprof_index"))
    for _span, c, p in m.snapshot(1).throttle.windows:
        assert c.share is None and c.throttled_ms_per_s is None and p.share is None


def test_futex_window_averages_and_reset_when_turned_off():
    m = SessionModel()
    for sec in range(1, 31):
        waits = 5000 if sec % 10 == 0 else 0
        m.add(schema.make_frame("futex", t=sec * 10**9, interval_ns=10**9, waits=waits,
                                wait_ns=waits * 1000, by_op={}, hist=[], top_threads=[]))
    f = m.snapshot(30).futex
    assert f.waits_per_s == 5000
    assert f.windows == ((10, 500.0), (60, 500.0))
    m.add(schema.make_frame("collector", t=31 * 10**9, name="futex", state="off",
                            reason=""))
    assert m.snapshot(31).futex.windows == ()
    m.add(schema.make_frame("collector", t=32 * 10**9, name="futex", state="on",
                            reason=""))
    m.add(schema.make_frame("futex", t=33 * 10**9, interval_ns=10**9, waits=7, wait_ns=7000,
                            by_op={}, hist=[], top_threads=[]))
    assert m.snapshot(33).futex.windows == ((10, 7.0), (60, 7.0))


def test_log_is_in_time_order_whenever_lines_arrive():
    # The session stamps "transport chosen" while attaching; the console notes
    # "attaching" a moment later but before the frame worker reads that frame.
    m = SessionModel()
    m.note(100.9, "info", "attaching to demo/x via local")
    m.add(schema.make_frame("log", t=100_200_000_000, level="info", msg="transport local: on node"))
    m.add(schema.make_frame("log", t=101_500_000_000, level="info", msg="attached"))
    s = m.snapshot(102)
    assert [line.text for line in s.log] == [
        "transport local: on node",
        "attaching to demo/x via local",
        "attached",
    ]
    assert s.log_reorders == 1
    assert [line.t for line in s.log] == sorted(line.t for line in s.log)


def test_log_stays_bounded_and_drops_a_line_older_than_all_kept():
    m = SessionModel(log_lines=3)
    for i in range(5):
        m.note(10.0 + i, "info", f"line {i}")
    m.note(1.0, "info", "ancient")  # older than every kept line: not kept
    m.note(12.5, "info", "late")
    texts = [line.text for line in m.snapshot(20).log]
    assert texts == ["late", "line 3", "line 4"]
