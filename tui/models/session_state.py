"""What the attached screen shows: one frozen snapshot per refresh, built from frames.

``SessionModel`` folds frames in as they arrive (on the frame reader thread,
under a lock) and ``snapshot(now)`` builds the immutable ``SessionSnapshot``
that every pane renders. All of it is pure code: no Textual, no I/O.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bpf import schema
from tui.models.calltree import EMPTY_VIEW, CallTreeModel, CallTreeView, Stack
from tui.models.series import TimeSeries
from tui.models.text import clean

NS = 1e9
STALE_AFTER_S = 5.0
DEFAULT_FUTEX_COST = "adds ≈40 ns to every syscall on the node while on"


@dataclass(frozen=True)
class LogLine:
    t: float
    level: str  # info | warn | error
    text: str


@dataclass(frozen=True)
class Header:
    pod: str
    namespace: str
    node: str
    container: str
    transport: str
    link: str  # connecting | live | stale | reconnecting | dropped | ended
    link_detail: str
    data_age: float | None  # seconds since the newest frame's time
    frames: int
    unparsed: int
    agent: str  # "agent 0.1 on node-1 (kernel 6.1)"


@dataclass(frozen=True)
class GoroutineView:
    count: int | None
    rate: float | None  # goroutines per second over the last 30 s
    spark: tuple[float, ...]
    peak: float | None
    source: str
    gc_per_s: float | None = None


@dataclass(frozen=True)
class FutexView:
    state: str  # off | on | failed | unavailable
    reason: str
    cost: str
    waits_per_s: float | None
    mean_wait_us: float | None
    hist: tuple[tuple[str, int], ...]  # (bucket label, count), latency ascending
    top_threads: tuple[tuple[int, str, int, float], ...]  # tid, comm, waits, wait ms
    spark: tuple[float, ...]
    # Waits per second averaged over the last N seconds: ((N, waits/s), ...).
    windows: tuple[tuple[int, float | None], ...] = ()
    interval_s: float | None = None  # length of the last interval


@dataclass(frozen=True)
class ThrottleNumbers:
    share: float | None  # throttled periods / periods, 0..1
    throttled_ms_per_s: float | None
    usage_cores: float | None
    quota: str  # "0.20 CPU (20 ms per 100 ms)" or "no limit"
    limited: bool


@dataclass(frozen=True)
class ThrottleView:
    """Throttling of the last interval and averaged over the recent windows.

    The last interval alone reads 0 % between bursts while the findings (over
    60 s) say the container is throttled most of the time: both are shown.
    """

    container: ThrottleNumbers  # the last interval
    pod: ThrottleNumbers
    cgroup_version: str
    spark: tuple[float, ...]  # container throttled share in percent
    interval_s: float | None = None  # length of the last interval
    # Averages over the last N seconds, as ((N, container, pod), ...) shortest first.
    windows: tuple[tuple[int, ThrottleNumbers, ThrottleNumbers], ...] = ()


@dataclass(frozen=True)
class Finding:
    """A finding as the pane shows it; produced by ``tui.findings`` or sent as a dict."""

    id: str
    severity: str  # info | warning | critical | not_measured
    title: str
    evidence: tuple[str, ...] = ()
    next_step: str = ""
    pane: str = ""  # goroutines | futex | throttle | calltree | log
    path: tuple[str, ...] = ()  # a call-tree path to highlight, root first


@dataclass(frozen=True)
class SessionSnapshot:
    header: Header
    goroutines: GoroutineView
    futex: FutexView
    throttle: ThrottleView
    calltree: CallTreeView
    log: tuple[LogLine, ...]
    findings: tuple[Finding, ...]
    now: float
    collectors: tuple[tuple[str, str], ...] = ()  # (name, state)
    # Bumped when a log line was put before lines already kept: redraw the log.
    log_reorders: int = 0


EMPTY_NUMBERS = ThrottleNumbers(None, None, None, "unknown", False)


def format_us(us: float) -> str:
    """1 µs, 512 µs, 4.1 ms, 2.0 s."""
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.1f} s"


def hist_label(slot: int) -> str:
    """Label of a log2 microsecond slot: [2^slot, 2^(slot+1)) µs, by its lower bound."""
    return "≥" + format_us(2 ** max(0, int(slot)))


def quota_text(quota_us: Any, period_us: Any) -> tuple[str, bool]:
    """Human text for a CFS quota, and whether a limit is set."""
    try:
        q, p = float(quota_us), float(period_us)
    except (TypeError, ValueError):
        return "unknown", False
    if q < 0 or p <= 0:
        return "no limit", False
    return f"{q / p:.2f} CPU ({q / 1000:.0f} ms per {p / 1000:.0f} ms)", True


def throttle_numbers(d: Mapping[str, Any] | None, interval_ns: float) -> ThrottleNumbers:
    """Shares and rates from one cgroup's cpu.stat deltas."""
    if not isinstance(d, Mapping):
        return EMPTY_NUMBERS
    quota, limited = quota_text(d.get("quota_us"), d.get("period_us"))
    secs = interval_ns / NS if interval_ns else 0.0
    periods = _num(d.get("nr_periods"))
    throttled = _num(d.get("nr_throttled"))
    share = (throttled / periods) if periods else (0.0 if periods == 0 and limited else None)
    tns = _num(d.get("throttled_ns"))
    usage = _num(d.get("usage_ns"))
    return ThrottleNumbers(
        share=share,
        throttled_ms_per_s=(tns / 1e6 / secs) if secs else None,
        usage_cores=(usage / NS / secs) if secs and usage is not None else None,
        quota=quota,
        limited=limited,
    )


AVERAGE_WINDOWS_S = (10, 60)
_THROTTLE_FIELDS = ("nr_periods", "nr_throttled", "throttled_ns", "usage_ns")


class WindowSums:
    """Per-interval counter deltas kept for the longest window, summed on demand.

    A window's average is the sum of its deltas over the sum of its intervals
    (throttled periods / periods, not a mean of per-interval shares), which is
    what the findings engine computes over its own window. Bounded: entries
    older than ``keep_s`` go, and at most ``capacity`` are kept whatever the
    frame rate.
    """

    def __init__(self, keep_s: float = max(AVERAGE_WINDOWS_S), capacity: int = 1024) -> None:
        self.keep_s = keep_s
        self._items: deque[tuple[float, float, tuple[float | None, ...]]] = deque(maxlen=capacity)

    def add(self, t: float, interval_s: float, values: Sequence[float | None]) -> None:
        self._items.append((t, interval_s, tuple(values)))
        cutoff = t - self.keep_s
        while self._items and self._items[0][0] <= cutoff:
            self._items.popleft()

    def clear(self) -> None:
        self._items.clear()

    def sums(self, span_s: float) -> tuple[float, list[float | None]] | None:
        """(seconds covered, per-field sums) over intervals ending in the last ``span_s``.

        A field missing from any interval of the window sums to None.
        """
        if not self._items:
            return None
        newest = self._items[-1][0]
        secs = 0.0
        out: list[float | None] = [0.0] * len(self._items[-1][2])
        for t, interval, values in reversed(self._items):
            if t <= newest - span_s:
                break
            secs += interval
            for i, v in enumerate(values[: len(out)]):
                acc = out[i]
                out[i] = None if acc is None or v is None else acc + v
        return secs, out


def window_throttle(
    sums: tuple[float, list[float | None]] | None, quota: str, limited: bool
) -> ThrottleNumbers:
    """Throttle numbers over a window from ``WindowSums.sums``."""
    if sums is None or sums[0] <= 0:
        return ThrottleNumbers(None, None, None, quota, limited)
    secs, (periods, throttled, tns, usage) = sums
    share = None
    if periods and throttled is not None:
        share = throttled / periods
    elif periods == 0 and limited:
        share = 0.0
    return ThrottleNumbers(
        share=share,
        throttled_ms_per_s=tns / 1e6 / secs if tns is not None else None,
        usage_cores=usage / NS / secs if usage is not None else None,
        quota=quota,
        limited=limited,
    )


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _per_second(sums: tuple[float, list[float | None]] | None) -> float | None:
    if sums is None or sums[0] <= 0 or sums[1][0] is None:
        return None
    return sums[1][0] / sums[0]


def to_finding(obj: Any) -> Finding | None:
    """Accept a finding from the engine (object or dict) in the shapes it may take."""
    get: Callable[[str], Any]
    if isinstance(obj, Mapping):
        get = obj.get
    else:

        def get(name: str) -> Any:
            return getattr(obj, name, None)

    title = get("title")
    if not title:
        return None
    evidence = get("evidence") or ()
    if isinstance(evidence, str):
        evidence = (evidence,)
    elif isinstance(evidence, Mapping):
        evidence = tuple(f"{k}: {v}" for k, v in evidence.items())
    ev = tuple(clean(e if isinstance(e, str) else _evidence_text(e), 300) for e in evidence)
    path = get("path") or get("stack") or ()
    return Finding(
        id=clean(get("id") or get("rule") or "", 60),
        severity=clean(get("severity") or "info", 20).lower(),
        title=clean(title, 200),
        evidence=ev,
        next_step=clean(get("next_step") or get("next") or get("action") or "", 300),
        pane=clean(get("pane") or "", 20),
        path=tuple(clean(p, 200) for p in path) if isinstance(path, (list, tuple)) else (),
    )


def _evidence_text(e: Any) -> str:
    if isinstance(e, Mapping):
        return ", ".join(f"{k}={v}" for k, v in e.items())
    return str(e)


SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2, "not_measured": 3}

# Either a one-shot function of the recent frames (``tui.findings.evaluate_frames``)
# or an incremental engine with ``feed(frame)`` and ``evaluate(now_ns)``
# (``tui.findings.FindingsEngine``), which is cheaper: frames are fed once.
FindingsEngine = Callable[[Sequence[Mapping[str, Any]]], Iterable[Any]] | Any
ProfileDecoder = Callable[[Mapping[str, Any]], list[tuple[Stack, int]]]


@dataclass
class _Throttle:
    container: ThrottleNumbers = EMPTY_NUMBERS
    pod: ThrottleNumbers = EMPTY_NUMBERS
    version: str = ""
    interval_s: float | None = None
    container_sums: WindowSums = field(default_factory=WindowSums)
    pod_sums: WindowSums = field(default_factory=WindowSums)


@dataclass
class _Futex:
    state: str = "off"
    reason: str = ""
    waits_per_s: float | None = None
    mean_wait_us: float | None = None
    hist: tuple[tuple[str, int], ...] = ()
    top: tuple[tuple[int, str, int, float], ...] = ()
    interval_s: float | None = None


@dataclass
class _Link:
    state: str = "connecting"
    detail: str = ""
    agent: str = ""
    ended: bool = False


@dataclass
class SessionModel:
    """Everything seen on one session, folded from frames. Thread-safe.

    Args:
        pod, namespace, node, container, transport: what the header names.
        findings_engine: optional ``tui.findings`` entry point, given the
            recent frames, returning findings (objects or dicts).
        profile_decoder: turns a cpu ``profile`` frame into root-first stacks
            (pprof-only mode); without it those frames only go to the log.
    """

    pod: str = ""
    namespace: str = ""
    node: str = ""
    container: str = ""
    transport: str = ""
    findings_engine: FindingsEngine | None = None
    profile_decoder: ProfileDecoder | None = None
    log_lines: int = 300
    recent_frames: int = 4000

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        """Start from nothing (on creation, and when a replay jumps back)."""
        self.calltree = CallTreeModel()
        self.goroutines = TimeSeries(horizon=600)
        self.gc_rate = TimeSeries(horizon=120)
        self.futex_rate = TimeSeries(horizon=600)
        self._futex_sums = WindowSums()  # (waits,) per interval, for the averages
        self.throttle_share = TimeSeries(horizon=600)
        self._throttle = _Throttle()
        self._futex = _Futex()
        self._futex_cost = DEFAULT_FUTEX_COST
        self._goroutine_source = ""
        self._link = _Link()
        self._log: deque[LogLine] = deque(maxlen=self.log_lines)
        self._log_reorders = 0  # lines put before already-kept ones (the pane redraws)
        self._recent: deque[Mapping[str, Any]] = deque(maxlen=self.recent_frames)
        # Profiles are large (MBs); keep only the last few for a one-shot engine.
        self._recent_profiles: deque[Mapping[str, Any]] = deque(maxlen=12)
        eng = self.findings_engine
        self._incremental = eng is not None and hasattr(eng, "feed") and hasattr(eng, "evaluate")
        self._frames = 0
        self._unparsed = 0
        self._last_t: float | None = None
        self._collectors: dict[str, str] = {}
        self._findings: tuple[Finding, ...] = ()
        self._sent_findings: dict[str, Finding] = {}

    # ---- input -------------------------------------------------------------

    @property
    def frames_seen(self) -> int:
        """Frames folded in so far (a cheap change detector for the refresh loop)."""
        return self._frames

    def note(self, t: float, level: str, text: str) -> None:
        """A line of the console's own (e.g. "futex waits enabled")."""
        with self._lock:
            self._log_line(LogLine(t, level, clean(text)))

    def _log_line(self, line: LogLine) -> None:
        """Keep the log in time order, whoever stamped the line and whenever it arrives.

        Lines come from three clocks' worth of places: the console's own notes
        (stamped when noted), the session's frames (stamped when the session
        made them, read later by the frame worker) and the agent's frames. A
        line folded in after a newer one goes to its place in time, so the log
        never reads a second backwards.
        """
        log = self._log
        if not log or line.t >= log[-1].t:
            log.append(line)
            return
        i = len(log)
        while i > 0 and log[i - 1].t > line.t:
            i -= 1
        if len(log) == log.maxlen:
            if i == 0:
                return  # older than everything kept: it would scroll out at once
            log.popleft()
            i -= 1
        log.insert(i, line)
        self._log_reorders += 1

    def count_unparsed(self, n: int = 1) -> None:
        with self._lock:
            self._unparsed += n

    def set_link(self, state: str, detail: str = "") -> None:
        with self._lock:
            self._link.state = state
            self._link.detail = clean(detail, 200)

    def add(self, frame: Mapping[str, Any]) -> None:
        """Fold in one decoded frame. A frame that does not fit is counted, never raised."""
        with self._lock:
            try:
                self._add(frame)
            except (
                KeyError,
                TypeError,
                ValueError,
                AttributeError,
                ZeroDivisionError,
                schema.FrameError,
            ):
                self._unparsed += 1
            engine = self.findings_engine if self._incremental else None
        if engine is not None:
            # The engine has its own lock: a slow evaluation holds back only the
            # engine's input, never the panes' snapshot.
            with self._engine_lock:
                engine.feed(dict(frame))

    def add_many(self, frames: Iterable[Mapping[str, Any]]) -> None:
        for f in frames:
            self.add(f)

    def _add(self, f: Mapping[str, Any]) -> None:
        kind = f.get("kind")
        t_ns = f.get("t")
        if kind not in schema.FRAME_FIELDS or not isinstance(t_ns, int):
            self._unparsed += 1
            return
        t = t_ns / NS
        self._frames += 1
        self._last_t = t if self._last_t is None else max(self._last_t, t)
        if self.findings_engine is not None and not self._incremental:
            (self._recent_profiles if kind == "profile" else self._recent).append(f)
        link = f.get("link")  # transports mark their own log frames with the link state
        if isinstance(link, str) and link:
            self._link.state = clean(link, 20)
            self._link.detail = clean(f.get("msg", ""), 200)
        elif self._link.state in ("connecting", "reconnecting") and kind != "log":
            self._link.state = "live"
            self._link.detail = ""
        if kind == "log" and f.get("replay") == "reset":
            # A replay jumped back in time: what was folded in is from the future now.
            engine = self.findings_engine
            self._clear()
            if self._incremental:
                self.findings_engine = type(engine)()
            self._frames = 1
            self._last_t = t
        handler = getattr(self, "_on_" + kind, None)
        if handler is not None:
            handler(t, f)

    def _on_hello(self, t: float, f: Mapping[str, Any]) -> None:
        self._link.state, self._link.detail, self._link.ended = "live", "", False
        host, kernel = clean(f.get("host"), 60), clean(f.get("kernel"), 60)
        self._link.agent = f"agent {clean(f.get('agent'), 20)} on {host} (kernel {kernel})"
        cols = f.get("collectors")
        if isinstance(cols, Mapping):
            futex = cols.get("futex")
            cost = futex.get("cost") if isinstance(futex, Mapping) else None
            if cost:
                self._futex_cost = clean(cost, 120)
            if isinstance(futex, Mapping) and futex.get("available") is False:
                self._futex.state = "unavailable"
                self._futex.reason = clean(futex.get("reason", ""), 200)
        self._log_line(LogLine(t, "info", f"attached: {self._link.agent}"))

    def _on_collector(self, t: float, f: Mapping[str, Any]) -> None:
        name, state = clean(f["name"], 40), clean(f["state"], 20)
        reason = clean(f.get("reason", ""), 200)
        self._collectors[name] = state
        if name == "futex":
            self._futex.state, self._futex.reason = state, reason
            if state != "on":
                self._futex.waits_per_s = None
                self._futex_sums.clear()  # averages restart when tracing does
        level = "warn" if state == "failed" else "info"
        self._log_line(
            LogLine(t, level, f"{name} collector {state}" + (f": {reason}" if reason else ""))
        )

    def _on_log(self, t: float, f: Mapping[str, Any]) -> None:
        level = clean(f.get("level", "info"), 10)
        self._log_line(LogLine(t, level, clean(f.get("msg"))))

    def _on_error(self, t: float, f: Mapping[str, Any]) -> None:
        hint = clean(f.get("hint", ""))
        text = clean(f.get("msg")) + (f" — {hint}" if hint else "")
        self._log_line(LogLine(t, "error", text))
        code = str(f.get("code", ""))
        if f.get("fatal"):
            self._link.state, self._link.detail = "ended", clean(f.get("msg"), 200)
        elif code.startswith("link"):
            self._link.state, self._link.detail = "dropped", clean(f.get("msg"), 200)

    def _on_cpu_stacks(self, t: float, f: Mapping[str, Any]) -> None:
        # Symbols come from the target's binary: clean each name once per frame.
        funcs = [clean(name, 300) for name in f["funcs"]]
        stacks = schema.expand_stacks({"funcs": funcs, "stacks": f["stacks"]})
        self.calltree.add(t, stacks, "ebpf")
        lost = f.get("lost") or 0
        if lost:
            self._log_line(LogLine(t, "warn", f"{lost} stack samples lost in the last interval"))

    def _on_futex(self, t: float, f: Mapping[str, Any]) -> None:
        secs = (f["interval_ns"] or 0) / NS
        waits = float(f["waits"])
        rate = waits / secs if secs else None
        self._futex.state = "on"
        self._futex.waits_per_s = rate
        self._futex.interval_s = secs or None
        self._futex.mean_wait_us = (float(f["wait_ns"]) / waits / 1000) if waits else 0.0
        hist = sorted((int(s), int(c)) for s, c in f.get("hist") or ())
        self._futex.hist = tuple((hist_label(s), c) for s, c in hist)
        top = []
        for th in (f.get("top_threads") or ())[:8]:
            top.append(
                (
                    int(th.get("tid", 0)),
                    clean(th.get("comm"), 32),
                    int(th.get("waits", 0)),
                    float(th.get("wait_ns", 0)) / 1e6,
                )
            )
        self._futex.top = tuple(top)
        if rate is not None:
            self.futex_rate.add(t, rate)
            self._futex_sums.add(t, secs, (waits,))

    def _on_goroutines(self, t: float, f: Mapping[str, Any]) -> None:
        self.goroutines.add(t, float(f["count"]))
        self._goroutine_source = clean(f.get("source"), 20)

    def _on_gc(self, t: float, f: Mapping[str, Any]) -> None:
        secs = (f["interval_ns"] or 0) / NS
        if secs:
            self.gc_rate.add(t, float(f["cycles"]) / secs)

    def _on_throttle(self, t: float, f: Mapping[str, Any]) -> None:
        interval = float(f["interval_ns"] or 0)
        self._throttle.container = throttle_numbers(f.get("container"), interval)
        self._throttle.pod = throttle_numbers(f.get("pod"), interval)
        self._throttle.version = clean(f.get("cgroup_version"), 4)
        secs = interval / NS
        self._throttle.interval_s = secs or None
        if secs > 0:
            for level, sums in (
                ("container", self._throttle.container_sums),
                ("pod", self._throttle.pod_sums),
            ):
                d = f.get(level)
                if isinstance(d, Mapping):
                    sums.add(t, secs, [_num(d.get(k)) for k in _THROTTLE_FIELDS])
        if self._throttle.container.share is not None:
            self.throttle_share.add(t, self._throttle.container.share * 100)

    def _on_profile(self, t: float, f: Mapping[str, Any]) -> None:
        kind = clean(f.get("profile"), 20)
        if f.get("empty"):
            note = clean(f.get("note", ""))
            self._log_line(
                LogLine(t, "warn", f"{kind} profile is empty" + (f": {note}" if note else ""))
            )
            return
        if kind == "cpu" and self.profile_decoder is not None:
            self.calltree.add(t, self.profile_decoder(f), "pprof")

    def _on_target_exit(self, t: float, f: Mapping[str, Any]) -> None:
        self._log_line(LogLine(t, "error", f"the target process exited: {clean(f.get('reason'))}"))

    def _on_bye(self, t: float, f: Mapping[str, Any]) -> None:
        self._link.state, self._link.ended = "ended", True
        self._link.detail = clean(f.get("reason"), 200)
        self._log_line(
            LogLine(
                t,
                "info",
                f"agent detached ({clean(f.get('detached'), 10)} probes removed): "
                f"{self._link.detail}",
            )
        )

    def end(self, reason: str) -> None:
        """The frame stream finished (the session closed or the recording ran out)."""
        with self._lock:
            if self._link.state != "ended":
                self._link.state, self._link.detail = "ended", clean(reason, 200)
            self._link.ended = True

    # ---- view state (keys on the attached screen) -----------------------------

    def set_window(self, window: str) -> None:
        with self._lock:
            self.calltree.set_window(window)

    def freeze(self, on: bool) -> None:
        with self._lock:
            self.calltree.freeze(on)

    def reset(self) -> None:
        with self._lock:
            self.calltree.reset()

    def set_findings(self, findings: Iterable[Any]) -> None:
        """Findings sent as dicts (or objects) by whoever evaluates them."""
        out = [x for x in (to_finding(o) for o in findings) if x is not None]
        out.sort(key=lambda x: (SEVERITY_ORDER.get(x.severity, 9), x.id))
        with self._lock:
            self._findings = tuple(out)

    def evaluate_findings(self) -> None:
        """Run the findings engine on the recent frames (call it off the UI thread)."""
        if self.findings_engine is None:
            return
        try:
            if self._incremental:
                with self._lock:
                    now_ns = int(self._last_t * NS) if self._last_t is not None else None
                    engine = self.findings_engine
                with self._engine_lock:
                    found = list(engine.evaluate(now_ns))
            else:
                with self._lock:
                    frames = sorted([*self._recent, *self._recent_profiles], key=lambda f: f["t"])
                found = list(self.findings_engine(frames))
        except Exception as e:  # noqa: BLE001 - a rule bug must not take the console down
            self.note(self._last_t or 0.0, "error", f"findings engine failed: {e}")
            return
        self.set_findings(found)

    # ---- output --------------------------------------------------------------

    def snapshot(
        self, now: float, spark_points: int = 60, spark_span: float = 180.0
    ) -> SessionSnapshot:
        """The frozen view of everything, for one refresh at wall-clock ``now``."""
        with self._lock:
            age = None if self._last_t is None else max(0.0, now - self._last_t)
            link, detail = self._link.state, self._link.detail
            if link == "live" and age is not None and age > STALE_AFTER_S:
                link, detail = "stale", f"no data for {age:.0f} s"
            data_now = self._last_t
            header = Header(
                pod=clean(self.pod, 120),
                namespace=clean(self.namespace, 80),
                node=clean(self.node or "?", 60),
                container=clean(self.container, 60),
                transport=clean(self.transport, 20),
                link=link,
                link_detail=detail,
                data_age=age,
                frames=self._frames,
                unparsed=self._unparsed,
                agent=self._link.agent,
            )
            g = self.goroutines.view(spark_span, spark_points, 30.0, data_now)
            gc = self.gc_rate.last
            fx = self._futex
            futex = FutexView(
                state=fx.state,
                reason=fx.reason,
                cost=self._futex_cost,
                waits_per_s=fx.waits_per_s,
                mean_wait_us=fx.mean_wait_us,
                hist=fx.hist,
                top_threads=fx.top,
                interval_s=fx.interval_s,
                spark=self.futex_rate.buckets(spark_span, spark_points, data_now)
                if fx.state == "on"
                else (),
                windows=tuple(
                    (span, _per_second(self._futex_sums.sums(span))) for span in AVERAGE_WINDOWS_S
                )
                if fx.state == "on"
                else (),
            )
            th = self._throttle
            throttle = ThrottleView(
                container=th.container,
                pod=th.pod,
                cgroup_version=th.version,
                spark=self.throttle_share.buckets(spark_span, spark_points, data_now),
                interval_s=th.interval_s,
                windows=tuple(
                    (
                        span,
                        window_throttle(
                            th.container_sums.sums(span), th.container.quota, th.container.limited
                        ),
                        window_throttle(th.pod_sums.sums(span), th.pod.quota, th.pod.limited),
                    )
                    for span in AVERAGE_WINDOWS_S
                ),
            )
            tree = self.calltree.view() if self._frames else EMPTY_VIEW
            return SessionSnapshot(
                header=header,
                goroutines=GoroutineView(
                    count=int(g.last) if g.last is not None else None,
                    rate=g.rate,
                    spark=g.spark,
                    peak=g.peak,
                    source=self._goroutine_source,
                    gc_per_s=gc,
                ),
                futex=futex,
                throttle=throttle,
                calltree=tree,
                log=tuple(self._log),
                log_reorders=self._log_reorders,
                findings=self._findings,
                now=now,
                collectors=tuple(sorted(self._collectors.items())),
            )
