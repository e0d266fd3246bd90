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
