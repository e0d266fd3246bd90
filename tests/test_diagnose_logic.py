"""Diagnosis driver logic on a scripted session (pure; the real path, a real
agent on real processes, is in test_findings_real.py and test_diagnose.py)."""

from __future__ import annotations

import queue
import threading
import time

from findings_frames import GOROUTINE_TYPES, MUTEX_TYPES, profile

from bpf.schema import make_frame
from tui.diagnose import DiagnoseOptions, Diagnosis
from tui.sources.base import PodInfo, SessionInfo

POD = PodInfo(namespace="demo", name="p", uid="u", status="Running", ready="1/1", restarts=0,
              created=0.0, node="node-1", cpu_limit=None, pprof_port=6060)


class ScriptedAgent:
    """Answers commands like the agent would: collectors come up, profiles arrive,
    at most ``max_busy`` concurrent fetches (the rest get a ``busy`` error)."""

    def __init__(self, die_after_s: float | None = None, max_busy: int = 4) -> None:
        self.info = SessionInfo(pod=POD, container="app", node="node-1", transport="local")
        self.q: queue.Queue = queue.Queue()
        self.sent: list[dict] = []
        self.in_flight = 0
        self.max_busy = max_busy
        self.busy_errors = 0
        self.die_after_s = die_after_s
        self.closed = threading.Event()
        self.t0 = time.monotonic()
        self.q.put(make_frame("hello", agent="0", host="h", kernel="k", target={},
                              collectors={}, clock_offset_ns=0))
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        n = 0
        while not self.closed.is_set():
            n += 1
            self.q.put(make_frame("goroutines", count=10, source="pprof_index"))
            if self.die_after_s is not None and time.monotonic() - self.t0 > self.die_after_s:
                self.q.put(make_frame("error", code="agent_exited", msg="the agent exited",
                                      hint="", fatal=True))
                self.q.put(None)
                return
            time.sleep(0.1)

    def frames(self):
        while True:
            f = self.q.get()
            if f is None:
                return
            yield f

    def send(self, cmd: dict) -> None:
        self.sent.append(cmd)
        if cmd["cmd"] == "enable":
            self.q.put(make_frame("collector", name=cmd["collector"], state="on", reason=""))
        elif cmd["cmd"] == "profile":
            if self.in_flight >= self.max_busy:
                self.busy_errors += 1
                self.q.put(make_frame("error", code="busy", msg="busy", hint="", fatal=False,
                                      id=cmd["id"]))
                return
            self.in_flight += 1
            threading.Timer(min(cmd["seconds"], 1) * 0.2 + 0.05, self._answer, (cmd,)).start()

    def _answer(self, cmd: dict) -> None:
        self.in_flight -= 1
        types = GOROUTINE_TYPES if cmd["profile"] == "goroutine" else MUTEX_TYPES
        f = profile(cmd["profile"], time.time_ns(), types, [(("main.main",), [1] * len(types))],
                    seconds=cmd["seconds"])
        self.q.put(f | {"id": cmd["id"]})

    def close(self) -> None:
        self.closed.set()
        self.q.put(None)


def test_plan_enables_collectors_and_fetches_every_profile_once():
    s = ScriptedAgent(max_busy=3)
    res = Diagnosis(s, DiagnoseOptions(duration_s=5, grace_s=5)).run()
    s.close()
    enabled = [c["collector"] for c in s.sent if c["cmd"] == "enable"]
    assert enabled == ["cpu_stacks", "gc"]
    got = sorted(f["profile"] for f in res.frames if f["kind"] == "profile")
    assert got == sorted(["goroutine", "heap", "mutex", "block", "cpu", "goroutine", "heap"])
    assert s.busy_errors == 0  # never more than three in flight
    windows = {c["profile"]: c["seconds"] for c in s.sent if c["cmd"] == "profile"}
    assert windows["mutex"] == windows["block"] == windows["cpu"] == 3
    assert res.report.exit_code in (0, 1, 2) and res.report.target["node"] == "node-1"


def test_busy_profiles_are_retried():
    s = ScriptedAgent(max_busy=1)
    res = Diagnosis(s, DiagnoseOptions(duration_s=4, grace_s=8)).run()
    s.close()
    assert s.busy_errors > 0  # the agent said busy ...
    assert len([f for f in res.frames if f["kind"] == "profile"]) == 7  # ... and all arrived


def test_agent_death_mid_window_is_could_not_measure():
    s = ScriptedAgent(die_after_s=1.0)
    res = Diagnosis(s, DiagnoseOptions(duration_s=10)).run()
    assert res.report.exit_code == 3
    assert any(e["code"] == "agent_exited" for e in res.report.errors)


def test_no_agent_within_attach_timeout_is_could_not_measure():
    class Silent(ScriptedAgent):
        def __init__(self) -> None:
            self.info = SessionInfo(pod=POD, container="app", node=None, transport="ssh")
            self.q = queue.Queue()
            self.sent = []
            self.closed = threading.Event()

        def send(self, cmd: dict) -> None:
            self.sent.append(cmd)

    s = Silent()
    t0 = time.monotonic()
    res = Diagnosis(s, DiagnoseOptions(duration_s=5, attach_timeout_s=1.0)).run()
    assert time.monotonic() - t0 < 5
    assert res.report.exit_code == 3 and res.report.status == "not_measured"
    assert "no data from demo/p" in res.report.errors[-1]["msg"]
