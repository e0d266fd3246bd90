"""Headless diagnosis: attach, watch for a while, fetch profiles, evaluate, report.

``Diagnosis(session, options).run()`` drives any ``Session`` (the cluster's
``AgentSession``, a local agent process, a replay): it turns on the collectors
a diagnosis needs, asks for the goroutine, heap, mutex, block and CPU profiles
at the right moments of the window, feeds every frame to the findings engine
(and the recorder), and returns a ``Report``. Progress goes to a callback
(the CLI prints it on stderr); the report's exit code follows the contract in
``tui.findings.report``.

Profile plan for a window of D seconds (all pprof fetches run in the agent's
worker threads, at most four at once):

- at attach: goroutine and heap (cumulative, the "before" picture);
  mutex and block as delta profiles over D-2 s; CPU profile over min(D-2, 30) s;
- at D-1 s: goroutine and heap again (the "after": leak and heap growth diffs).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bpf.schema import FrameError, decode_frame, encode, make_command
from tui.findings.engine import FindingsEngine
from tui.findings.report import Report
from tui.sources.base import PodInfo, Session, SessionInfo

Progress = Callable[[str], None]

# Collectors a diagnosis turns on besides the agent's defaults. futex is opt-in
# (``--futex``): it costs ~40 ns on every syscall of the whole node while on, and
# in Go its waits are only supporting evidence (parked threads).
DIAGNOSE_COLLECTORS = ("cpu_stacks", "gc")
MAX_IN_FLIGHT = 3


@dataclass
class DiagnoseOptions:
    duration_s: float = 30.0
    attach_timeout_s: float = 30.0
    #: How long to wait for the requested collectors to come up (bcc compiles
    #: each eBPF program at attach: tens of seconds on a busy node).
    collector_wait_s: float = 90.0
    #: Extra seconds to wait after the window for profiles still in flight.
    grace_s: float = 15.0
    collectors: tuple[str, ...] = DIAGNOSE_COLLECTORS
    fetch_profiles: bool = True
    cpu_profile_max_s: int = 30


@dataclass
class _Request:
    id: str
    kind: str
    seconds: int
    at_s: float
    sent: bool = False
    done: bool = False


@dataclass
class DiagnosisResult:
    report: Report
    frames: list[dict[str, Any]] = field(default_factory=list)

    def latest_profiles(self) -> dict[str, dict[str, Any]]:
        """The newest non-empty profile frame per kind (for export)."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.frames:
            if f.get("kind") == "profile" and f.get("data") and not f.get("empty"):
                out[str(f["profile"])] = f
        return out


class Diagnosis:
    """One diagnosis run over a session. ``run()`` blocks for about the window."""

    def __init__(
        self,
        session: Session,
        options: DiagnoseOptions | None = None,
        *,
        recorder: Any = None,
        progress: Progress | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.opt = options or DiagnoseOptions()
        self.recorder = recorder
        self.progress = progress or (lambda msg: None)
        self.monotonic = monotonic
        # The engine keeps everything the run sees (attach wait included), so a
        # replay of the run's recording evaluates the very same frames.
        self.engine = FindingsEngine(window_s=self.opt.attach_timeout_s
                                     + self.opt.collector_wait_s + self.opt.duration_s
                                     + self.opt.grace_s + 60)
        self.frames: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._requests: list[_Request] = []
        self._first_t = 0
        self._last_t = 0
        self._agent_seen = False
        self._hello_mono = 0.0
        self._started = False
        self._collector_state: dict[str, str] = {}
        self._fatal = ""
        self._start_mono = 0.0

    def _plan(self) -> None:
        d = max(1, int(self.opt.duration_s))
        win = max(1, d - 2)
        plan = [("goroutine", 0, 0.0), ("heap", 0, 0.0), ("mutex", win, 0.0),
                ("block", win, 0.0), ("cpu", min(win, self.opt.cpu_profile_max_s), 0.0)]
        if d >= 4:
            plan += [("goroutine", 0, d - 1.0), ("heap", 0, d - 1.0)]
        for i, (kind, secs, at) in enumerate(plan):
            self._requests.append(_Request(f"diag-{kind}-{i}", kind, secs, at))

    def _reader(self) -> None:
        try:
            for f in self.session.frames():
                self._q.put(f)
        except Exception as e:  # noqa: BLE001 - a broken stream ends the run with the reason
            self._q.put({"kind": "error", "t": time.time_ns(), "code": "stream_failed",
                         "msg": f"the frame stream failed: {e}", "hint": "", "fatal": True,
                         "origin": "console"})
        self._q.put(None)

    def _take(self, f: dict[str, Any]) -> None:
        self.frames.append(f)
        if self.recorder is not None:
            self.recorder.write(f)
        self.engine.feed(f)
        kind = f.get("kind")
        t = int(f.get("t") or 0)
        if f.get("origin") != "console":
            if kind not in ("log", "error"):
                if not self._agent_seen:
                    self._agent_seen = True
                    self._hello_mono = self.monotonic()
                    self.progress(self._hello_text(f))
                self._last_t = max(self._last_t, t)
            if kind == "collector":
                self._collector_state[str(f.get("name"))] = str(f.get("state"))
        if kind == "error" and f.get("code") == "busy":
            for r in self._requests:
                if f.get("id") == r.id and self._started:
                    # Retry a moment later rather than lose the profile.
                    r.sent, r.at_s = False, self.monotonic() - self._start_mono + 1.0
            return
        if kind == "error":
            self.errors.append(f)
            self.progress(f"{'error' if f.get('fatal') else 'problem'}: {f.get('msg', '')} "
                          f"{f.get('hint', '')}".rstrip())
            for r in self._requests:
                if f.get("id") == r.id:
                    r.done = True
        elif kind == "log" and f.get("level") in ("warn", "error"):
            self.progress(f"{f.get('level')}: {f.get('msg', '')}")
        elif kind == "profile":
            for r in self._requests:
                if f.get("id") == r.id:
                    r.done = True
            note = f" ({f.get('note')})" if f.get("note") else ""
            self.progress(f"got {f.get('profile')} profile: {f.get('size', 0)} bytes"
                          f"{', empty' if f.get('empty') else ''}{note}")
        elif kind == "collector" and f.get("state") == "failed":
            self.progress(f"collector {f.get('name')} unavailable: {f.get('reason', '')}")

    def _hello_text(self, f: dict[str, Any]) -> str:
        info = self.session.info
        return (f"attached to {info.pod.namespace}/{info.pod.name} via {info.transport}"
                f"{' on ' + info.node if info.node else ''}; starting "
                f"{', '.join(self.opt.collectors)}")

    def _maybe_start(self, now: float) -> None:
        """Start the window once every requested collector is on or failed (or
        after ``collector_wait_s``), so compile time does not eat the window."""
        if self._started or not self._agent_seen:
            return
        waiting = [c for c in self.opt.collectors if c not in self._collector_state]
        if waiting and now - self._hello_mono < self.opt.collector_wait_s:
            return
        self._started = True
        self._start_mono = now
        self._first_t = self._last_t
        if waiting:
            self.progress(f"no word from {', '.join(waiting)}; going on without")
        self.progress(f"watching for {self.opt.duration_s:.0f} s")

    def _send_due(self, elapsed: float) -> None:
        for r in self._requests:
            in_flight = sum(1 for q in self._requests if q.sent and not q.done)
            # The agent fetches at most four profiles at once; stay under that.
            if in_flight >= MAX_IN_FLIGHT:
                return
            if not r.sent and elapsed >= r.at_s:
                r.sent = True
                self.session.send(make_command("profile", id=r.id, profile=r.kind,
                                               seconds=r.seconds))
                if r.seconds:
                    self.progress(f"fetching {r.kind} profile over {r.seconds} s")

    def run(self) -> DiagnosisResult:
        reader = threading.Thread(target=self._reader, daemon=True, name="diagnose-frames")
        reader.start()
        for c in self.opt.collectors:
            self.session.send(make_command("enable", collector=c))
        if self.opt.fetch_profiles:
            self._plan()
        t0 = self.monotonic()
        ended = False
        fatal = False
        while True:
            now = self.monotonic()
            if not self._agent_seen:
                if now - t0 >= self.opt.attach_timeout_s or ended or fatal:
                    break
            elif not self._started:
                self._maybe_start(now)
                if ended or fatal:
                    break
            else:
                elapsed = now - self._start_mono
                self._send_due(elapsed)
                pending = [r for r in self._requests if not r.done]
                if ended or fatal:
                    break
                if elapsed >= self.opt.duration_s and (
                        not pending or elapsed >= self.opt.duration_s + self.opt.grace_s):
                    for r in pending:
                        self.progress(f"gave up waiting for the {r.kind} profile")
                    break
            try:
                f = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if f is None:
                ended = True
                continue
            self._take(f)
            if f.get("kind") == "error" and f.get("fatal"):
                fatal = True
                self._fatal = str(f.get("msg") or f.get("code") or "fatal error")
            if f.get("kind") in ("target_exit", "bye"):
                ended = True
        # Drain what already arrived.
        while True:
            try:
                f = self._q.get_nowait()
            except queue.Empty:
                break
            if f is not None:
                self._take(f)
        return DiagnosisResult(self._report(), self.frames)

    def _report(self) -> Report:
        info: SessionInfo = self.session.info
        pod: PodInfo = info.pod
        end = self._last_t
        findings = self.engine.evaluate(end) if self._agent_seen else []
        profiles: dict[str, dict[str, Any]] = {}
        for f in self.frames:
            if f.get("kind") == "profile":
                profiles[str(f["profile"])] = {"fetched": True, "empty": bool(f.get("empty")),
                                               "note": str(f.get("note") or "")}
        for r in self._requests:
            profiles.setdefault(r.kind, {"fetched": False, "empty": True,
                                         "note": "not received in the window"})
        # The cgroup alone is not a diagnosis of a Go process: without any Go-level
        # data (goroutines, profiles, CPU stacks) the verdict is "could not measure".
        reachable = self._agent_seen and any(
            f.severity != "not_measured" and not f.rule_id.startswith("GKD001") for f in findings)
        cut_short = bool(self._fatal) and (
            not self._started or self.monotonic() - self._start_mono < self.opt.duration_s)
        if cut_short and not any(f.is_problem for f in findings):
            # The agent died before the window was over: what we have is not a
            # verdict, so say "could not measure" rather than "healthy".
            reachable = False
        if not self._agent_seen:
            self.errors.append({"code": "unreachable",
                                "msg": f"no data from {pod.namespace}/{pod.name} within "
                                       f"{self.opt.attach_timeout_s:.0f} s",
                                "hint": "check the transport flags (--transport, --ssh-*) and "
                                        "that the pod is Running"})
        return Report(
            findings=findings,
            target={"namespace": pod.namespace, "pod": pod.name, "uid": pod.uid,
                    "node": info.node, "container": info.container, "transport": info.transport},
            start_ns=self._first_t,
            end_ns=end,
            reachable=reachable,
            profiles=profiles,
            errors=_unique_errors(self.errors),
            frames_received=len(self.frames),
            frames_bad=self.engine.bad_frames,
        )


def _unique_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for e in errors:
        d = {k: str(e.get(k, "")) for k in ("code", "msg", "hint")}
        if (d["code"], d["msg"]) not in seen:
            seen.add((d["code"], d["msg"]))
            out.append(d)
    return out


class AgentProcessSession:
    """A Session over a node agent run as a local subprocess (``/usr/bin/python3
    -m bpf.agent ARGS``): for a process on this host without a cluster (tests,
    ``diagnose --pid``). Needs root for eBPF; pprof and cgroup work without."""

    def __init__(self, agent_args: list[str], info: SessionInfo,
                 python: str = "/usr/bin/python3", cwd: str | None = None) -> None:
        import os

        self.info = info
        root = cwd or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._proc = subprocess.Popen(
            [python, "-m", "bpf.agent", *agent_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=root, env={**os.environ, "PYTHONPATH": root},
        )
        self._lock = threading.Lock()
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.decode("utf-8", "replace").rstrip())
            del self._stderr[:-50]

    def frames(self) -> Iterator[dict[str, Any]]:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                yield decode_frame(line)
            except FrameError:
                continue
        rc = self._proc.wait()
        if rc not in (0, None):
            tail = " | ".join(self._stderr[-3:])
            yield {"v": 1, "kind": "error", "t": time.time_ns(), "code": "agent_exited",
                   "msg": f"the agent exited with code {rc}: {tail}", "hint": "", "fatal": True,
                   "origin": "console"}

    def send(self, command: dict[str, Any]) -> None:
        with self._lock:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(encode(command).encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def close(self) -> None:
        with self._lock:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()  # the agent exits, detaching probes, on EOF
            except OSError:
                pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def local_pid_session(pid: int, pprof_port: int = 6060, hz: int | None = None,
                      name: str = "") -> AgentProcessSession:
    """A session on a local process by host PID."""
    args = ["--pid", str(pid), "--pprof-port", str(pprof_port)]
    if hz:
        args += ["--hz", str(hz)]
    pod = PodInfo(namespace="local", name=name or f"pid-{pid}", uid="", status="Running",
                  ready="", restarts=0, created=0.0, node=None, cpu_limit=None,
                  pprof_port=pprof_port)
    return AgentProcessSession(args, SessionInfo(pod=pod, container="", node=None,
                                                 transport="local"))


def stderr_progress(msg: str) -> None:
    sys.stderr.write(f"diagnose: {msg}\n")
    sys.stderr.flush()
