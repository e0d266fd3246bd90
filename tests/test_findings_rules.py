"""Findings rules on synthetic frame sequences (pure logic; the real-process
tests of the same rules are in test_findings_real.py)."""

from __future__ import annotations

import pytest
from findings_frames import (
    APP,
    GOROUTINE_TYPES,
    MUTEX_TYPES,
    T0,
    S,
    cpu,
    futex,
    gc,
    goroutines,
    profile,
    throttle,
)

from tui.findings import Finding, FindingsEngine
from tui.findings.report import Report


def run(frames: list[dict], seconds: int = 30) -> list[Finding]:
    eng = FindingsEngine()
    for f in sorted(frames, key=lambda f: f["t"]):
        eng.feed(f)
    return eng.evaluate(T0 + seconds * S)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.rule_id.split("-")[0]: f for f in findings}


def healthy_frames(seconds: int = 30) -> list[dict]:
    return (throttle(seconds, throttled=0)
            + goroutines([12, 13, 12, 12, 14, 12] * (seconds // 6))
            + cpu(seconds, [(APP + ("main.handle", "encoding/json.Marshal"), 2),
                            (APP + ("main.handle",), 1),
                            (("runtime.mcall", "runtime.schedule"), 1)], hz=99)
            + gc(seconds, per_s=0)
            + [profile("mutex", T0 + seconds * S, MUTEX_TYPES,
                       [(APP + ("sync.(*Mutex).Unlock",), [3, 20_000])], seconds=seconds),
               profile("block", T0 + seconds * S, MUTEX_TYPES,
                       [(APP + ("runtime.chanrecv1",), [5, 50_000_000])], seconds=seconds)])


def test_no_data_is_not_measured_never_healthy():
    findings = run([])
    assert findings and all(f.severity == "not_measured" for f in findings)
    assert Report(findings).status == "not_measured"
    assert Report(findings).exit_code == 3


def test_healthy_pod_yields_no_warning():
    findings = run(healthy_frames())
    assert [f for f in findings if f.is_problem] == []
    rep = Report(findings)
    assert rep.status == "healthy" and rep.exit_code == 0
    # measured rules say so, with their numbers
    ids = by_id(findings)
    assert ids["GKD001"].severity == "info"
    assert "0 of 300 periods throttled" in ids["GKD001"].evidence[0]


def test_throttling_is_first_and_critical_with_hot_function():
    frames = throttle(30, throttled=9) + cpu(30, [(APP + ("main.burn",), 40)])
    findings = run(frames)
    top = findings[0]
    assert top.rule_id == "GKD001-cpu-throttling"
    assert top.severity == "critical"
    assert "90%" in top.title
    assert any("main.burn" in line for line in top.evidence)
    assert top.related.pane == "throttle"
    assert top.related.stack[-1] == "main.burn"
    assert Report(findings).exit_code == 2


def test_mild_throttling_is_a_warning():
    f = by_id(run(throttle(30, throttled=2)))["GKD001"]
    assert f.severity == "warning"


def test_goroutine_leak_names_the_creating_stack():
    leak_stack = APP[:1] + ("main.startWorker.func1", "runtime.gopark")
    frames = goroutines([100 + 20 * i for i in range(30)]) + [
        profile("goroutine", T0 + 10 * S, GOROUTINE_TYPES,
                [(leak_stack, [200]), (APP + ("net/http.(*conn).serve",), [5])]),
        profile("goroutine", T0 + 29 * S, GOROUTINE_TYPES,
                [(leak_stack, [580]), (APP + ("net/http.(*conn).serve",), [6])]),
    ]
    findings = run(frames)
    top = findings[0]
    assert top.rule_id == "GKD002-goroutine-leak"
    assert top.severity in ("warning", "critical")
    assert "100 → 680" in top.title
    assert top.related.stack == leak_stack
    assert any("main.startWorker.func1" in line and "grew most" in line for line in top.evidence)


def test_long_running_leak_is_found_by_its_steady_rate():
    # 20 000 goroutines already, +30/s: only +4.5 % over the window, but it never stops.
    f = by_id(run(goroutines([20_000 + 30 * i for i in range(30)])))["GKD002"]
    assert f.severity == "warning", f
    assert "30.0/s" in f.title


def test_busy_server_drifting_up_and_down_is_not_a_leak():
    counts = [5000 + (60 if i % 3 == 0 else 0) + 3 * i for i in range(30)]
    f = by_id(run(goroutines(counts)))["GKD002"]
    assert f.severity == "info", f


def test_sawtooth_goroutines_are_not_a_leak():
    f = by_id(run(goroutines([100, 400, 100, 420, 90, 410] * 5)))["GKD002"]
    assert f.severity == "info"


def test_lock_contention_from_mutex_profile_futex_only_supporting():
    hot = APP + ("main.(*cache).get", "sync.(*Mutex).Unlock")
    frames = [profile("mutex", T0 + 30 * S, MUTEX_TYPES, [(hot, [5000, 6 * S])], seconds=30)]
    frames += futex(30, waits=2000, wait_ns=S)
    findings = run(frames)
    top = findings[0]
    assert top.rule_id == "GKD003-lock-contention"
    assert top.severity == "warning"  # 200 ms/s
    assert top.related.stack == hot
    assert any("parked threads" in line for line in top.evidence)


def test_futex_waits_alone_never_claim_lock_contention():
    f = by_id(run(futex(30, waits=5000, wait_ns=20 * S)))["GKD003"]
    assert f.severity == "not_measured"
    assert any("not goroutines waiting" in line for line in f.evidence)


def test_empty_mutex_profile_says_how_to_enable():
    frames = [profile("mutex", T0 + 30 * S, MUTEX_TYPES, [], empty=True),
              profile("block", T0 + 30 * S, MUTEX_TYPES, [], empty=True)]
    f = by_id(run(frames))["GKD003"]
    assert f.severity == "not_measured"
    assert "SetMutexProfileFraction" in f.evidence[0]


def test_channel_waits_from_block_profile():
    st = APP + ("main.consumer", "runtime.chanrecv1")
    frames = [profile("block", T0 + 30 * S, MUTEX_TYPES, [(st, [900, 60 * S])], seconds=30)]
    top = run(frames)[0]
    assert top.rule_id == "GKD004-channel-waits"
    assert top.severity == "warning"
    assert top.related.stack == st


def test_gc_pressure_from_gc_rate_and_cpu_share():
    frames = gc(30, per_s=12) + cpu(30, [(APP + ("main.alloc", "runtime.mallocgc"), 20),
                                         (("runtime.gcBgMarkWorker", "runtime.gcDrain"), 30)])
    top = run(frames)[0]
    assert top.rule_id == "GKD005-gc-pressure"
    assert top.severity == "critical"  # 60 % of CPU in GC
    assert top.related.stack[-1] == "main.alloc"


def test_cpu_hotspot_names_function_and_share():
    frames = cpu(30, [(APP + ("main.fib",), 45), (APP + ("main.handle",), 5)])
    top = run(frames)[0]
    assert top.rule_id == "GKD006-cpu-hotspot"
    assert top.severity == "warning"
    assert "main.fib" in top.title and "90%" in top.title


def test_hotspot_at_low_cpu_is_only_info():
    f = by_id(run(cpu(30, [(APP + ("main.fib",), 2)], hz=99)))["GKD006"]
    assert f.severity == "info"


def test_syscall_heavy_from_cpu_samples():
    frames = cpu(30, [(APP + ("main.writeLog", "os.(*File).Write", "syscall.Syscall"), 30),
                      (APP + ("main.handle",), 10)])
    ids = by_id(run(frames))
    assert ids["GKD007"].severity == "warning"
    assert any("main.writeLog" in line for line in ids["GKD007"].evidence)


def test_window_drops_old_frames():
    eng = FindingsEngine(window_s=10)
    for f in throttle(30, throttled=9):
        eng.feed(f)
    f = by_id(eng.evaluate(T0 + 30 * S))["GKD001"]
    assert "of 100 periods" in f.evidence[0]  # only the last 10 s


def test_bad_frames_are_counted_not_raised():
    eng = FindingsEngine()
    eng.feed({"kind": "cpu_stacks", "t": T0, "funcs": [], "stacks": [[1, [7]]]})
    eng.feed({"kind": "throttle"})
    eng.feed(profile("heap", T0, MUTEX_TYPES, []) | {"data": "bm90IGEgcHJvZmlsZQ=="})
    assert eng.bad_frames == 2
    assert "could not be decoded" in eng.profiles["heap"][-1].note


def test_target_exit_is_critical():
    from bpf.schema import make_frame

    top = run([make_frame("target_exit", t=T0 + S, reason="exited", exit_code=2)])[0]
    assert top.rule_id == "GKD008-target-exited" and top.severity == "critical"


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_report_renders_and_strips_control_characters(fmt):
    hostile = APP + ("main.\x1b[31mevil[bold]",)
    findings = run(cpu(30, [(hostile, 45)]))
    out = Report(findings, target={"namespace": "demo", "pod": "p"}).render(fmt)
    assert "\x1b" not in out
    assert "GKD006-cpu-hotspot" in out


def test_json_report_follows_the_documented_schema():
    import json
    from pathlib import Path

    schema = json.loads((Path(__file__).parent.parent / "docs" / "diagnose-schema.json")
                        .read_text())
    doc = json.loads(Report(run(healthy_frames()), target={"namespace": "demo", "pod": "x"})
                     .to_json())
    assert set(schema["required"]) <= set(doc)
    item = schema["properties"]["findings"]["items"]
    for f in doc["findings"]:
        assert set(item["required"]) <= set(f)
        assert f["severity"] in item["properties"]["severity"]["enum"]
    assert doc["status"] in schema["properties"]["status"]["enum"]
    assert doc["exit_code"] in schema["properties"]["exit_code"]["enum"]


def test_malformed_numbers_are_rejected_at_feed_time():
    eng = FindingsEngine()
    good = throttle(3, throttled=0)
    bad = [dict(good[0], container="not a dict"), dict(good[1], container={"nr_periods": "x"}),
           goroutines([1])[0] | {"count": "many"}, gc(1, 1)[0] | {"cycles": None}]
    for f in good + bad:
        eng.feed(f)
    assert eng.bad_frames == 4
    findings = eng.evaluate(T0 + 3 * S)
    assert all("rule failed" not in f.title for f in findings)
    assert by_id(findings)["GKD001"].severity == "info"


def test_specific_problem_goes_before_throttling_but_a_hotspot_does_not():
    st = APP + ("main.consumer", "runtime.chanrecv1")
    frames = throttle(30, throttled=9) + [
        profile("block", T0 + 30 * S, MUTEX_TYPES, [(st, [900, 30 * S])], seconds=30)]
    findings = run(frames)
    assert findings[0].rule_id == "GKD004-channel-waits"
    assert findings[0].severity == "critical"  # raised to the throttling's severity
    assert findings[1].rule_id == "GKD001-cpu-throttling"
    assert "CPU-throttled" in findings[0].evidence[-1]
    hot = run(throttle(30, throttled=9) + cpu(30, [(APP + ("main.fib",), 45)]))
    assert hot[0].rule_id == "GKD001-cpu-throttling"
    assert hot[1].rule_id == "GKD006-cpu-hotspot"


def test_throttling_on_a_v2_cgroup_without_cpu_controller_is_not_measured():
    # What the agent sends for a cgroup2 directory whose cpu controller is off:
    # usage only, periods None, and a note saying why.
    note = "cpu controller not enabled on this cgroup v2 node"
    frames = []
    for f in throttle(30, throttled=0):
        for level in ("container", "pod"):
            f[level] = {"nr_periods": None, "nr_throttled": None, "throttled_ns": None,
                        "quota_us": None, "usage_ns": 200_000_000,
                        "throttling": "not_measured", "note": note}
        frames.append(f)
    f = by_id(run(frames))["GKD001"]
    assert f.severity == "not_measured"
    assert note in f.evidence[0] and "0 of 0 periods" not in " ".join(f.evidence)


def test_throttling_measured_on_the_pod_when_only_the_container_is_not():
    frames = throttle(30, throttled=9)
    for f in frames:
        f["container"] = {"usage_ns": 1, "throttling": "not_measured", "note": "no cpu here"}
    f = by_id(run(frames))["GKD001"]
    assert f.severity == "critical" and "pod cgroup quota" in f.title
    assert any("container cgroup: throttling not measured: no cpu here" in e for e in f.evidence)
