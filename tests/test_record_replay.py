"""Recordings: write, read back anywhere, replay paced/paused/seeked, same findings."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time

from findings_frames import APP, MUTEX_TYPES, T0, S, cpu, goroutines, profile, throttle

from tui.findings import FindingsEngine
from tui.record import Recorder, read_recording
from tui.replay_cli import main as replay_main
from tui.sources.base import ContainerInfo, PodInfo, SessionInfo
from tui.sources.replay import ReplayClock, ReplaySession, ReplaySessionFactory

POD = PodInfo(namespace="demo", name="cpu-7f9", uid="u-1", status="Running", ready="1/1",
              restarts=0, created=0.0, node="node-1", cpu_limit="200m", pprof_port=6060,
              containers=(ContainerInfo(name="app", image="sandbox.local/faultsvc"),),
              labels={"app": "cpu"})
INFO = SessionInfo(pod=POD, container="app", node="node-1", transport="local")


def frames() -> list[dict]:
    fr = (throttle(20, throttled=8) + cpu(20, [(APP + ("main.hashPassword",), 40)])
          + goroutines([10] * 20)
          + [profile("mutex", T0 + 20 * S, MUTEX_TYPES, [(APP + ("sync.(*Mutex).Unlock",),
                                                          [1, 1000])], seconds=18)])
    return sorted(fr, key=lambda f: f["t"])


def record(path, fr) -> None:
    with Recorder(path, INFO, start_ns=T0) as rec:
        for f in fr:
            rec.write(f)


def findings_of(fr):
    eng = FindingsEngine()
    for f in fr:
        eng.feed(f)
    return eng.evaluate(T0 + 20 * S)


def test_recording_roundtrip_has_header_and_every_frame(tmp_path):
    p = tmp_path / "r.rec.gz"
    fr = frames()
    record(p, fr)
    raw = gzip.decompress(p.read_bytes()).decode().splitlines()
    header = json.loads(raw[0])
    assert header["kind"] == "recording" and header["format"] == 1
    assert header["pod"]["name"] == "cpu-7f9" and header["node"] == "node-1"
    assert header["start_ns"] == T0 and header["tool_version"]
    rec = read_recording(p)
    assert len(rec.frames) == len(fr) == len(raw) - 1
    assert rec.pod == POD
    assert any(f["kind"] == "profile" and f["data"] for f in rec.frames)


def test_recording_replays_elsewhere_to_the_same_findings(tmp_path):
    p = tmp_path / "a" / "r.rec.gz"
    p.parent.mkdir()
    fr = frames()
    record(p, fr)
    # "another machine": a different directory, the original removed
    q = tmp_path / "b.rec.gz"
    shutil.copy(p, q)
    shutil.rmtree(p.parent)
    s = ReplaySession(read_recording(q), speed=None, hold_open=False)
    replayed = list(s.frames())
    assert replayed == fr
    assert findings_of(replayed) == findings_of(fr)
    assert findings_of(replayed)[0].rule_id == "GKD001-cpu-throttling"


def test_truncated_recording_replays_up_to_the_cut(tmp_path):
    p = tmp_path / "r.rec.gz"
    record(p, frames())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    rec = read_recording(p)
    assert 0 < len(rec.frames) < len(frames())


def test_plain_jsonl_without_header_is_read(tmp_path):
    p = tmp_path / "plain.jsonl"
    p.write_text("".join(json.dumps(f) + "\n" for f in frames()) + "not json\n")
    rec = read_recording(p)
    assert len(rec.frames) == len(frames()) and rec.unparsed == 1


class FakeMono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _pump(session, out, stop):
    for f in session.frames():
        out.append(f)
        if stop.is_set():
            return


def test_pacing_pause_and_seek():
    fr = goroutines(list(range(10)))  # one frame per second, T0+1s .. T0+10s
    rec = read_recording_from(fr)
    mono = FakeMono()
    s = ReplaySession(rec, speed=1.0, monotonic=mono)
    out: list = []
    stop = threading.Event()
    th = threading.Thread(target=_pump, args=(s, out, stop), daemon=True)
    th.start()
    mono.t += 2.5
    wait_for(lambda: len(out) == 2)
    time.sleep(0.3)
    assert len(out) == 2  # paced: frame 3 is due at +3 s
    s.pause()
    mono.t += 5
    time.sleep(0.3)
    assert len(out) == 2 and s.paused
    assert abs(s.position_s - 2.5) < 0.01
    s.seek(6.0)  # forward while paused: catch up at once
    wait_for(lambda: len(out) == 6)
    assert [f["count"] for f in out] == [0, 1, 2, 3, 4, 5]
    s.seek(1.0)  # backward: a reset marker, then frames up to the target
    wait_for(lambda: any(f.get("replay") == "reset" for f in out))
    i = next(i for i, f in enumerate(out) if f.get("replay") == "reset")
    wait_for(lambda: len(out) >= i + 2)
    assert out[i + 1]["count"] == 0
    s.resume()
    mono.t += 20
    wait_for(lambda: out[-1].get("count") == 9)
    s.close()
    stop.set()
    th.join(2)


def test_replay_clock_follows_the_cursor():
    rec = read_recording_from(goroutines([1, 2, 3]))
    factory = ReplaySessionFactory(rec, speed=None, paused=True)
    clock = ReplayClock(factory)
    s = factory.attach(rec.pod)
    assert s.paused
    s.seek(1.0)
    assert abs(clock.now() - (s.start_ns / 1e9 + 1.0)) < 1e-6


def test_replay_report_cli_matches(tmp_path, capsys):
    p = tmp_path / "r.rec.gz"
    record(p, frames())
    code = replay_main([str(p), "--report", "json"])
    out = json.loads(capsys.readouterr().out)
    assert out["findings"][0]["rule_id"] == "GKD001-cpu-throttling"
    assert code == 2 and out["exit_code"] == 2
    assert out["target"]["pod"] == "cpu-7f9"


def test_replay_cli_errors(tmp_path, capsys):
    assert replay_main([str(tmp_path / "missing.gz"), "--report", "text"]) == 3
    assert "no recording at" in capsys.readouterr().err
    assert replay_main(["--bogus"]) == 64


def read_recording_from(fr):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = f"{d}/r.gz"
        with Recorder(p, INFO, start_ns=T0) as rec:
            for f in fr:
                rec.write(f)
        return read_recording(p)


def wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_replay_opens_the_console_on_the_recording(tmp_path):
    from tui.replay_cli import make_app
    from tui.screens.attached import AttachedScreen

    p = tmp_path / "r.rec.gz"
    record(p, frames())
    app = make_app(read_recording(p), speed=None)
    async with app.run_test(size=(140, 45)) as pilot:
        for _ in range(100):
            await pilot.pause(0.05)
            if isinstance(app.screen, AttachedScreen):
                break
        assert isinstance(app.screen, AttachedScreen)
        session = app.replay.current
        assert session is not None and session.info.transport == "replay"
        assert session.info.pod.name == "cpu-7f9"
        for _ in range(100):
            await pilot.pause(0.05)
            if session.finished:
                break
        assert session.finished
        # the console's clock is the recording's
        assert abs(app.clock.now() - session.end_ns / 1e9) < 1.0
