"""The findings engine: frames in, plain-language findings out.

Feed it every decoded frame (``feed``); ask it what it sees (``evaluate``).
It keeps a sliding window of frames (``window_s``, default 60 s) and one
rule per question. Every rule answers; a rule without its data source says
``not_measured``, never healthy. Pure code: no Textual, no I/O.

Rules (the README copies this table):

| ID | Triggers on | Thresholds (defaults, ``Thresholds``) |
|---|---|---|
| GKD001-cpu-throttling | cgroup ``cpu.stat`` deltas of the container or pod cgroup: \
throttled periods / periods, throttled CPU-time; the hottest function of the same \
window is added | warning >= 10 % of periods throttled (and >= 5 periods); \
critical >= 50 % |
| GKD002-goroutine-leak | goroutine count rising over >= 10 s: +20 % with >= 75 % of \
steps non-decreasing, or >= 1/s with >= 90 % (a long-running leak); creating stack = \
the goroutine-profile stack that grew most (else the largest) | warning: +50 and either \
growth test; critical: x5 or >= 100/s |
| GKD003-lock-contention | mutex-profile delay, and block-profile time under \
sync.Mutex/RWMutex, per second of wall clock; futex waits only as supporting evidence \
(parked OS threads in Go) | warning >= 50 ms/s; critical >= 500 ms/s |
| GKD004-channel-waits | block-profile time per second in channel sends/receives whose \
call site is app code (stdlib I/O waits such as an HTTP client, and select loops, are \
listed only) | warning >= 500 ms/s; critical >= 5 s/s |
| GKD005-gc-pressure | GC cycles/s (gc frames), GC share of CPU samples \
(gcBgMarkWorker, gcDrain, assists), heap growth (gc heap_bytes or two heap profiles), \
top allocator from the heap profile | warning >= 5 GC/s, or >= 25 % of CPU at >= 0.05 \
CPU, or heap x2 and +32 MiB, or allocating >= 8 MB/s (two heap profiles); critical \
>= 20 GC/s, >= 50 % of CPU or >= 512 MB/s |
| GKD006-cpu-hotspot | the app function (not runtime.*) with the largest flat share of \
CPU samples (eBPF, else pprof CPU profile) | warning: >= 30 % flat while the process \
uses >= 0.05 CPU; info otherwise |
| GKD007-syscall-heavy | share of CPU samples under syscall.Syscall*/ \
internal/runtime/syscall; futex wait rate | warning >= 30 % of samples at >= 0.05 CPU, \
or >= 20000 futex waits/s |
| GKD008-target-exited | a ``target_exit`` frame | critical |

When GKD001 fires together with GKD002/3/4/5/7, those (more specific) findings
are raised to at least GKD001's severity and ordered before it; a CPU hot spot
(GKD006) is not: it is the throttling's explanation, listed in its evidence.

Data sources per rule, for "not measured": GKD001 throttle; GKD002
goroutines; GKD003 mutex or block profile (a profile that is empty because
the app never called ``runtime.SetMutexProfileFraction`` /
``SetBlockProfileRate`` counts as not measured, and says so); GKD004 block
profile; GKD005 gc frames or a heap profile or CPU samples; GKD006 and
GKD007 CPU samples (eBPF or pprof CPU profile).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bpf.schema import FrameError, expand_stacks
from tui.findings.model import (
    Finding,
    Related,
    fmt_bytes,
    fmt_clock,
    fmt_ns,
    fmt_window,
    sort_findings,
)
from tui.profiles.pprof import Profile, ProfileError, Stack, TopRow, top_functions

NS = 1_000_000_000


@dataclass
class Thresholds:
    """Every number a rule compares against, in one place so tests and users can tune."""

    throttle_warn_ratio: float = 0.10
    throttle_crit_ratio: float = 0.50
    throttle_min_periods: int = 5
    leak_min_span_s: float = 10.0
    leak_min_growth: int = 50
    leak_min_rel_growth: float = 0.20
    leak_min_rate_per_s: float = 1.0
    leak_steady_share: float = 0.9
    leak_monotonic_share: float = 0.75
    leak_crit_factor: float = 5.0
    leak_crit_rate_per_s: float = 100.0
    mutex_warn_ns_per_s: float = 50e6
    mutex_crit_ns_per_s: float = 500e6
    chan_warn_ns_per_s: float = 500e6
    chan_crit_ns_per_s: float = 5e9
    gc_warn_per_s: float = 5.0
    gc_crit_per_s: float = 20.0
    gc_warn_cpu_share: float = 0.25
    gc_crit_cpu_share: float = 0.50
    heap_growth_factor: float = 2.0
    heap_min_growth_bytes: int = 32 << 20
    alloc_warn_bytes_per_s: float = 8e6
    alloc_crit_bytes_per_s: float = 512e6
    # CPU floors are low on purpose: demo pods run under 100-300m limits, and a
    # starved process is still the one to look at. Healthy services sit well below.
    hotspot_min_cpu: float = 0.05
    hotspot_warn_share: float = 0.30
    syscall_warn_share: float = 0.30
    syscall_min_cpu: float = 0.05
    futex_churn_per_s: float = 20000.0


# Frames that are the Go runtime's own machinery rather than the app's code:
# a hot spot there is reported by the GC or syscall rules instead.
RUNTIME_PREFIXES = ("runtime.", "runtime/internal/", "internal/runtime/", "[unknown]")
SYSCALL_MARKERS = (
    "syscall.Syscall",
    "syscall.RawSyscall",
    "syscall.syscall",
    "syscall.rawSyscall",
    "syscall.rawsyscall",
    "runtime/internal/syscall",
    "internal/runtime/syscall",
)
GC_MARKERS = (
    "runtime.gcBgMarkWorker",
    "runtime.gcDrain",
    "runtime.gcAssistAlloc",
    "runtime.markroot",
    "runtime.scanobject",
    "runtime.bgsweep",
    "runtime.sweepone",
    "runtime.gcStart",
)
CHAN_MARKERS = ("runtime.chansend", "runtime.chanrecv", "runtime.selectgo", "runtime.selectnbrecv")
PREEMPT_FRAMES = ("runtime.asyncPreempt",)
SELECT_MARKERS = ("runtime.selectgo", "runtime.selectnbrecv", "runtime.block")
LOCK_MARKERS = (
    "sync.(*Mutex).Lock",
    "sync.(*Mutex).lockSlow",
    "sync.(*RWMutex).Lock",
    "sync.(*RWMutex).RLock",
    "internal/sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).lockSlow",
    "sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutex",
    "sync.runtime_SemacquireRWMutexR",
    "internal/sync.runtime_SemacquireMutex",
)


@dataclass
class ProfileSample:
    """A fetched profile and the wall-clock window it covers."""

    kind: str
    t: int  # arrival (end of the window), ns
    seconds: float  # >0: a delta/duration profile over that many seconds
    profile: Profile | None
    empty: bool
    note: str = ""

    @property
    def start(self) -> int:
        return self.t - int(self.seconds * NS)


@dataclass
class _Window:
    frames: deque = field(default_factory=deque)

    def add(self, t: int, item: Any) -> None:
        self.frames.append((t, item))

    def prune(self, before: int) -> list:
        """Drop frames older than ``before``; return what was dropped."""
        gone = []
        while self.frames and self.frames[0][0] < before:
            gone.append(self.frames.popleft()[1])
        return gone

    def between(self, start: int, end: int) -> list:
        return [x for t, x in self.frames if start < t <= end]


class _Stacks(list):
    """CPU (stack, samples) pairs that also carry their flat/cum rows, so rules
    do not re-walk every stack to find the top function."""

    rows: list[TopRow]


class _CpuAgg:
    """CPU samples pre-aggregated by stack and by function (flat and cum).

    At 10,000 samples/s a 60 s window holds hundreds of thousands of samples
    spread over a few hundred stacks; re-expanding every frame's stacks on
    each evaluation cost seconds. Each frame is aggregated once at feed time
    and the window keeps a running sum (added on feed, subtracted on prune).
    """

    __slots__ = ("stacks", "flat", "cum", "samples")

    def __init__(self) -> None:
        self.stacks: dict[Stack, int] = {}
        self.flat: dict[str, int] = {}
        self.cum: dict[str, int] = {}
        self.samples = 0

    @classmethod
    def of(cls, pairs: Iterable[tuple[Stack, int]]) -> _CpuAgg:
        agg = cls()
        stacks, flat, cum = agg.stacks, agg.flat, agg.cum
        for st, c in pairs:
            if c <= 0:
                continue  # nothing sampled; a zero entry would only add empty rows
            # A sample taken while the runtime preempts a tight loop lands in
            # runtime.asyncPreempt; the time belongs to the loop, so drop that frame.
            if any(f.startswith(PREEMPT_FRAMES) for f in st):
                st = tuple(f for f in st if not f.startswith(PREEMPT_FRAMES)) or st
            agg.samples += c
            stacks[st] = stacks.get(st, 0) + c
            if st:
                flat[st[-1]] = flat.get(st[-1], 0) + c
                for name in set(st):
                    cum[name] = cum.get(name, 0) + c
        return agg

    def add(self, other: _CpuAgg, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` subtract) another aggregate; zeros vanish."""
        for mine, theirs in ((self.stacks, other.stacks), (self.flat, other.flat),
                             (self.cum, other.cum)):
            for k, v in theirs.items():
                n = mine.get(k, 0) + sign * v
                if n:
                    mine[k] = n
                else:
                    del mine[k]
        self.samples += sign * other.samples

    def view(self) -> _Stacks:
        out = _Stacks(self.stacks.items())
        rows = [TopRow(name, self.flat.get(name, 0), c) for name, c in self.cum.items()]
        rows.sort(key=lambda r: (-r.flat, -r.cum, r.name))
        out.rows = rows
        return out


def _top(stacks: list[tuple[Stack, int]]) -> list[TopRow]:
    rows = getattr(stacks, "rows", None)
    return rows if rows is not None else top_functions(stacks, None)


def _is_app_frame(name: str) -> bool:
    return not name.startswith(RUNTIME_PREFIXES)


def _is_user_frame(name: str) -> bool:
    """Code of the app or its dependencies, not the Go standard library: the
    package path's first element has a dot (github.com/...) or is ``main``."""
    pkg = name.split(".(", 1)[0]
    head, _, tail = pkg.partition("/")
    if not tail:
        return pkg.split(".", 1)[0] == "main"
    return "." in head


def _blocking_caller(stack: Stack, markers: tuple[str, ...]) -> str:
    """The first non-runtime frame above the innermost blocking frame (the call site)."""
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].startswith(markers):
            for f in reversed(stack[:i]):
                if _is_app_frame(f) and not f.startswith(markers) and not f.startswith(
                    ("sync.", "internal/sync.")
                ):
                    return f
            return ""
    return ""


def _self_inflicted(stack: Stack) -> bool:
    # The pprof handler serving our own delta profile waits on a timer/channel
    # for the whole window: that is the measurement, not the app.
    return any(f.startswith(("net/http/pprof.", "runtime/pprof.")) for f in stack)


def _leaf_is(stack: Stack, markers: tuple[str, ...]) -> bool:
    """Whether the innermost blocking frame (first from the leaf that is a
    channel operation) is one of ``markers``."""
    for f in reversed(stack):
        if f.startswith(CHAN_MARKERS) or f.startswith(SELECT_MARKERS):
            return f.startswith(markers)
    return False


def _has_marker(frames: Stack, markers: tuple[str, ...]) -> bool:
    return any(f.startswith(markers) for f in frames)


def _short(stack: Stack, n: int = 4) -> str:
    """Leaf-most frames of a stack for one evidence line, leaf last."""
    tail = [f for f in stack if _is_app_frame(f)][-n:] or list(stack[-n:])
    return " → ".join(tail)


_THROTTLE_KEYS = ("nr_periods", "nr_throttled", "throttled_ns", "usage_ns", "quota_us",
                  "period_us")


@functools.lru_cache(maxsize=16)
def _decode_cached(data_b64: str) -> Profile:
    # The console re-evaluates its recent frames every refresh; decode each profile once.
    return Profile.from_bytes(base64.b64decode(data_b64, validate=False))


class FindingsEngine:
    """Keeps recent frames and evaluates the rules over them."""

    def __init__(self, window_s: float = 60.0, thresholds: Thresholds | None = None) -> None:
        self.window_ns = int(window_s * NS)
        self.th = thresholds or Thresholds()
        self._w: dict[str, _Window] = {
            k: _Window() for k in ("throttle", "goroutines", "futex", "cpu", "gc")
        }
        # Profiles are few and large; keep the last few per kind regardless of window.
        self.profiles: dict[str, deque[ProfileSample]] = {}
        self.collectors: dict[str, str] = {}  # name -> on|off|failed (+reason)
        self.errors: list[dict[str, Any]] = []
        self.exit: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None
        self.last_t = 0
        self.bad_frames = 0
        self._cpu_sum = _CpuAgg()  # every cpu_stacks frame in the window, summed
        self._stacks: dict[Stack, Stack] = {}  # interned stacks (see _intern)
        self._cpu_memo: dict[tuple[int, int], tuple] = {}  # per (start, end); cleared on feed

    # --- input --------------------------------------------------------------------

    def feed(self, frame: dict[str, Any]) -> None:
        """Take one decoded frame. Malformed content is counted, never raised."""
        try:
            self._feed(frame)
        except (KeyError, TypeError, ValueError, FrameError):
            self.bad_frames += 1

    def _feed(self, fr: dict[str, Any]) -> None:
        kind = fr.get("kind")
        t = int(fr["t"])
        self.last_t = max(self.last_t, t)
        # Numbers are checked here, so a malformed frame is counted at feed time
        # and never breaks evaluate().
        if kind == "throttle":
            fr = dict(fr, interval_ns=int(fr.get("interval_ns") or 0))
            for level in ("container", "pod"):
                c = fr.get(level)
                if c is None:
                    continue
                if not isinstance(c, dict):
                    raise TypeError(f"throttle {level} is not an object")
                clean: dict[str, Any] = {
                    k: int(c[k]) for k in _THROTTLE_KEYS if c.get(k) is not None
                }
                if c.get("throttling") == "not_measured":
                    # cgroup v2 without the cpu controller: usage only, no periods.
                    clean["not_measured"] = str(c.get("note") or "cpu controller not enabled")
                fr[level] = clean
            self._w["throttle"].add(t, fr)
        elif kind == "goroutines":
            self._w["goroutines"].add(t, dict(fr, count=int(fr["count"])))
        elif kind == "futex":
            self._w["futex"].add(t, dict(fr, waits=int(fr["waits"]), wait_ns=int(fr["wait_ns"]),
                                          interval_ns=int(fr.get("interval_ns") or 0)))
        elif kind == "cpu_stacks":
            fr = dict(fr, hz=int(fr.get("hz") or 0), interval_ns=int(fr.get("interval_ns") or 0))
            agg = _CpuAgg.of((self._intern(st), int(c)) for st, c in expand_stacks(fr)
                             if all(isinstance(x, str) for x in st))
            self._w["cpu"].add(t, (fr, agg))
            self._cpu_sum.add(agg)
        elif kind == "gc":
            self._w["gc"].add(t, dict(
                fr, cycles=int(fr["cycles"]), interval_ns=int(fr.get("interval_ns") or 0),
                pause_ns=int(fr.get("pause_ns") or 0), cycle_ns=int(fr.get("cycle_ns") or 0),
                heap_bytes=int(fr.get("heap_bytes") or 0)))
        elif kind == "profile":
            self._feed_profile(fr, t)
        elif kind == "collector":
            self.collectors[str(fr["name"])] = str(fr["state"])
        elif kind == "error":
            self.errors.append(fr)
            del self.errors[:-20]
        elif kind == "target_exit":
            self.exit = fr
        elif kind == "hello":
            self.hello = fr
        self._cpu_memo.clear()
        before = self.last_t - self.window_ns
        for name, w in self._w.items():
            gone = w.prune(before)
            if name == "cpu":
                for _fr, agg in gone:
                    self._cpu_sum.add(agg, -1)

    def _intern(self, stack: Stack) -> Stack:
        """One shared tuple per distinct stack: a frame's decoded copies die at once
        instead of living in the window for a minute (memory by distinct stacks,
        not by frames, and no heap fragmentation under a steady stream)."""
        known = self._stacks.get(stack)
        if known is None:
            if len(self._stacks) > 2 * len(self._cpu_sum.stacks) + 4096:
                # Stacks no frame in the window holds any more: forget them.
                self._stacks = {s: s for s in self._cpu_sum.stacks}
            known = self._stacks[stack] = stack
        return known

    def _feed_profile(self, fr: dict[str, Any], t: int) -> None:
        kind = str(fr["profile"])
        prof: Profile | None = None
        empty = bool(fr.get("empty"))
        note = str(fr.get("note") or "")
        if not empty and fr.get("data"):
            try:
                prof = _decode_cached(str(fr["data"]))
                empty = prof.empty
            except (ProfileError, binascii.Error, ValueError) as e:
                note = f"profile could not be decoded: {e}"
                empty = True
        ps = ProfileSample(kind, t, float(fr.get("seconds") or 0), prof, empty, note)
        q = self.profiles.setdefault(kind, deque(maxlen=4))
        q.append(ps)

    def feed_profile(self, kind: str, data: bytes, t: int, seconds: float = 0.0) -> None:
        """Add a profile fetched outside the frame stream (pprof-only mode, tests)."""
        prof = Profile.from_bytes(data)
        q = self.profiles.setdefault(kind, deque(maxlen=4))
        q.append(ProfileSample(kind, t, seconds, prof, prof.empty))

    # --- output -------------------------------------------------------------------

    def evaluate(self, now_ns: int | None = None) -> list[Finding]:
        """Every rule's answer over the window ending at ``now_ns``, worst first."""
        now = int(now_ns if now_ns is not None else self.last_t)
        start = now - self.window_ns
        rules = [
            ("GKD001-cpu-throttling", self._throttling),
            ("GKD002-goroutine-leak", self._goroutine_leak),
            ("GKD003-lock-contention", self._lock_contention),
            ("GKD004-channel-waits", self._channel_waits),
            ("GKD005-gc-pressure", self._gc_pressure),
            ("GKD006-cpu-hotspot", self._cpu_hotspot),
            ("GKD007-syscall-heavy", self._syscall_heavy),
        ]
        out = []
        for rid, rule in rules:
            try:
                out.append(rule(start, now))
            except Exception as e:  # noqa: BLE001 - one rule's bug must not hide the others
                out.append(Finding(rid, "not_measured", f"{rid}: the rule failed",
                                   (f"{type(e).__name__}: {e}",), "", Related("findings")))
        if self.exit is not None:
            out.append(self._target_exited())
        return sort_findings(_specific_before_throttling([f for f in out if f is not None]))

    # --- helpers ------------------------------------------------------------------

    def _not_measured(self, rule_id: str, title: str, why: str, pane: str) -> Finding:
        return Finding(rule_id, "not_measured", title, (why,), "", Related(pane))

    def _span(self, frames: list[dict[str, Any]]) -> tuple[int, int]:
        s = min(int(f["t"]) - int(f.get("interval_ns") or 0) for f in frames)
        e = max(int(f["t"]) for f in frames)
        return s, e

    def _cpu(self, start: int, end: int) -> tuple[list[tuple[Stack, int]], float, str, tuple]:
        # Several rules ask for the same window in one evaluation.
        key = (start, end)
        hit = self._cpu_memo.get(key)
        if hit is None:
            hit = self._cpu_memo[key] = self._cpu_raw(start, end)
        return hit

    def _cpu_raw(self, start: int, end: int) -> tuple[list[tuple[Stack, int]], float, str, tuple]:
        """CPU samples in the window: (stacks, cores used, source, window).

        eBPF samples first (continuous, low-cost); a pprof CPU profile whose
        window overlaps ours otherwise. Values are sample counts (eBPF) or
        nanoseconds (pprof); only shares are compared, so the unit cancels.
        """
        items = self._w["cpu"].between(start, end)
        if items:
            if len(items) == len(self._w["cpu"].frames):
                agg = self._cpu_sum  # the usual case: the whole window
            else:
                agg = _CpuAgg()
                for _fr, a in items:
                    agg.add(a)
            stacks: list[tuple[Stack, int]] = agg.view()
            samples = agg.samples
            secs = 0.0
            hz = 0
            for fr, _a in items:
                secs += int(fr.get("interval_ns") or 0) / NS
                hz = hz or int(fr.get("hz") or 0)
            cores = samples / (hz * secs) if hz and secs else 0.0
            # Go's own profiler counts thread CPU time exactly; perf sampling can
            # miss samples on a loaded node. Take the larger estimate of CPU use.
            ps = self._latest_profile("cpu", start, end)
            if ps and ps.profile is not None and not ps.profile.empty:
                dur = ps.profile.duration_ns or int(ps.seconds * NS)
                try:
                    pcores = ps.profile.total("cpu") / dur if dur else 0.0
                except ProfileError:
                    pcores = 0.0
                cores = max(cores, pcores)
            return stacks, cores, f"eBPF CPU samples ({samples} at {hz} Hz)", self._span(
                [fr for fr, _ in items])
        ps = self._latest_profile("cpu", start, end)
        if ps and ps.profile is not None and not ps.profile.empty:
            p = ps.profile
            try:
                stacks = p.stacks("cpu")
            except ProfileError:
                stacks = p.stacks()
            dur = p.duration_ns or int(ps.seconds * NS)
            total = sum(v for _, v in stacks)
            cores = total / dur if dur else 0.0
            stacks = _CpuAgg.of(stacks).view()
            return stacks, cores, f"pprof CPU profile ({fmt_ns(total)} CPU)", (ps.start, ps.t)
        return [], 0.0, "", (0, 0)

    def _latest_profile(self, kind: str, start: int, end: int) -> ProfileSample | None:
        """The newest profile of a kind whose window overlaps [start, end]."""
        for ps in reversed(self.profiles.get(kind, ())):
            if ps.t >= start and ps.start <= end:
                return ps
        return None

    def _profile_rate(self, kind: str, start: int, end: int, sample_type: str):
        """(stacks, seconds covered, sample) for a wait profile: a delta profile
        (``seconds`` > 0) directly, else the difference of the last two
        cumulative ones. None when there is nothing usable."""
        ps = self._latest_profile(kind, start, end)
        if ps is None or ps.profile is None:
            return None
        p = ps.profile
        try:
            stacks = p.stacks(sample_type)
        except ProfileError:
            return None
        if ps.seconds > 0:
            return stacks, ps.seconds, ps
        if p.duration_ns > 0:
            return stacks, p.duration_ns / NS, ps
        prev = [q for q in self.profiles.get(kind, ()) if q is not ps and q.profile and q.t < ps.t]
        if prev:
            old = prev[-1]
            before: dict[Stack, int] = {}
            assert old.profile is not None
            for st, v in old.profile.stacks(sample_type):
                before[st] = before.get(st, 0) + v
            now: dict[Stack, int] = {}
            for st, v in stacks:
                now[st] = now.get(st, 0) + v
            diff = [(st, v - before.get(st, 0)) for st, v in now.items() if v > before.get(st, 0)]
            return diff, (ps.t - old.t) / NS, ps
        return None

    def _futex_support(self, start: int, end: int) -> list[str]:
        fx = self._w["futex"].between(start, end)
        if not fx:
            return []
        waits = sum(int(f["waits"]) for f in fx)
        wait_ns = sum(int(f["wait_ns"]) for f in fx)
        s, e = self._span(fx)
        return [
            f"Supporting only: {waits} futex waits, {fmt_ns(wait_ns)} waited by OS threads "
            f"in {fmt_window(s, e)}. In Go these are parked threads (idle Ms, runtime locks), "
            "not goroutines waiting on a sync.Mutex, so they do not prove contention."
        ]

    # --- rules --------------------------------------------------------------------

    def _throttling(self, start: int, end: int) -> Finding:
        rid, title = "GKD001-cpu-throttling", "CPU throttling by the cgroup quota"
        frames = self._w["throttle"].between(start, end)
        if not frames:
            return self._not_measured(rid, title + ": not measured",
                                      "No cgroup cpu.stat readings (throttle collector off or "
                                      "node not reachable).", "throttle")
        s, e = self._span(frames)
        worst = None
        lines = []
        quota_line = ""
        unmeasured: list[str] = []
        for level in ("container", "pod"):
            note = next((str(f[level]["not_measured"]) for f in frames
                         if "not_measured" in (f.get(level) or {})), "")
            if note:
                unmeasured.append(f"{level} cgroup: throttling not measured: {note}")
                continue
            periods = throttled = tns = usage = 0
            quota = period = -1
            for f in frames:
                c = f.get(level) or {}
                periods += int(c.get("nr_periods") or 0)
                throttled += int(c.get("nr_throttled") or 0)
                tns += int(c.get("throttled_ns") or 0)
                usage += int(c.get("usage_ns") or 0)
                quota = int(c.get("quota_us", quota) if c.get("quota_us") is not None else quota)
                period = int(c.get("period_us") or period)
            if not frames[0].get(level):
                continue
            ratio = throttled / periods if periods else 0.0
            secs = max(1e-9, (e - s) / NS)
            cores = usage / NS / secs
            if quota > 0 and period > 0:
                limit = quota / period
                ql = f"{level} quota {quota / 1000:.0f} ms per {period / 1000:.0f} ms = " \
                     f"{limit:.2f} CPU; used {cores:.2f} CPU on average"
            else:
                ql = f"{level}: no CPU limit; used {cores:.2f} CPU on average"
            quota_line = quota_line or ql
            lines.append(
                f"{level} cgroup: {throttled} of {periods} periods throttled ({ratio:.0%}), "
                f"{fmt_ns(tns)} throttled CPU-time (summed over CPUs) in {fmt_window(s, e)}"
            )
            lines.append(ql)
            if periods >= self.th.throttle_min_periods and (worst is None or ratio > worst[0]):
                worst = (ratio, throttled, level)
        if unmeasured and not lines:
            return self._not_measured(rid, title + ": not measured", " ".join(unmeasured),
                                      "throttle")
        lines.extend(unmeasured)
        if worst is None or worst[1] < self.th.throttle_min_periods or \
                worst[0] < self.th.throttle_warn_ratio:
            return Finding(rid, "info", "No significant CPU throttling", tuple(lines), "",
                           Related("throttle"), 0.0, (s, e))
        ratio, _, level = worst
        sev = "critical" if ratio >= self.th.throttle_crit_ratio else "warning"
        stacks, _cores, src, _win = self._cpu(s, e)
        stack: Stack = ()
        if stacks:
            top = [r for r in _top(stacks) if _is_app_frame(r.name)]
            tot = sum(v for _, v in stacks)
            if top and tot:
                lines.append(f"Hottest function in the same window: {top[0].name} "
                             f"({top[0].flat / tot:.0%} flat, {top[0].cum / tot:.0%} cum; {src})")
                stack = _hot_stack(stacks, top[0].name)
        return Finding(
            rid, sev, f"CPU throttled in {ratio:.0%} of periods by the {level} cgroup quota",
            tuple(lines),
            "Raise the CPU limit or cut CPU use (see the call tree for the hot path). "
            "Keep GOMAXPROCS at or below the quota (Go >= 1.25 does this itself; older Go: "
            "set GOMAXPROCS or use automaxprocs) to avoid bursty throttling.",
            Related("throttle", stack, "ebpf" if stack else ""), ratio, (s, e))

    def _goroutine_leak(self, start: int, end: int) -> Finding:
        rid, title = "GKD002-goroutine-leak", "Goroutine leak"
        frames = self._w["goroutines"].between(start, end)
        if not frames:
            return self._not_measured(rid, title + ": not measured",
                                      "No goroutine counts (pprof not reachable and the uprobe "
                                      "collector off).", "goroutines")
        pts = [(int(f["t"]), int(f["count"])) for f in frames]
        s, e = pts[0][0], pts[-1][0]
        span = (e - s) / NS
        first, last = pts[0][1], pts[-1][1]
        peak = max(c for _, c in pts)
        lines = [f"{first} → {last} goroutines (peak {peak}) over {fmt_window(s, e)}, "
                 f"{len(pts)} readings from {frames[-1].get('source', '?')}"]
        if span < self.th.leak_min_span_s or len(pts) < 3:
            return Finding(rid, "info", "Goroutine count: too short a window to judge growth",
                           tuple(lines + [f"Needs >= {self.th.leak_min_span_s:.0f} s."]),
                           "", Related("goroutines"), 0.0, (s, e))
        steps = [b[1] - a[1] for a, b in zip(pts, pts[1:], strict=False)]
        up = sum(1 for d in steps if d >= 0) / len(steps)
        growth = last - first
        rate = growth / span if span else 0.0
        rel = growth / max(first, 1)
        # A leak that has run for hours grows by a small fraction in a 30 s window, so
        # steady growth (almost every reading up or level) counts as well as relative growth.
        leaking = (growth >= self.th.leak_min_growth
                   and ((rel >= self.th.leak_min_rel_growth
                         and up >= self.th.leak_monotonic_share)
                        or (rate >= self.th.leak_min_rate_per_s
                            and up >= self.th.leak_steady_share)))
        if not leaking:
            return Finding(rid, "info", f"Goroutine count steady ({last})", tuple(lines), "",
                           Related("goroutines"), 0.0, (s, e))
        lines.append(f"Net growth {growth:+d} ({rel:+.0%}), {rate:.1f}/s; "
                     f"{up:.0%} of readings did not go down")
        sev = "critical" if (last >= first * self.th.leak_crit_factor and first > 0) or \
            rate >= self.th.leak_crit_rate_per_s else "warning"
        stack = self._leak_stack(lines)
        return Finding(
            rid, sev, f"Goroutine leak: {first} → {last} goroutines, {rate:.1f}/s",
            tuple(lines),
            "Find what starts the goroutines on the highlighted stack and why they never "
            "return: a missing cancel/ctx.Done(), an unread channel, a blocked send with no "
            "receiver, a missing timeout on an outbound call.",
            Related("calltree" if stack else "goroutines", stack, "goroutine" if stack else ""),
            min(1.0, rel / 10 + 0.5), (s, e))

    def _leak_stack(self, lines: list[str]) -> Stack:
        profs = [p for p in self.profiles.get("goroutine", ()) if p.profile and not p.empty]
        if not profs:
            lines.append("No goroutine profile fetched: the creating stack is unknown "
                         "(fetch one: the goroutine profile).")
            return ()
        newest = profs[-1]
        assert newest.profile is not None
        cur: dict[Stack, int] = {}
        for st, v in newest.profile.stacks():
            cur[st] = cur.get(st, 0) + v
        how = "largest group"
        if len(profs) >= 2:
            assert profs[-2].profile is not None
            old: dict[Stack, int] = {}
            for st, v in profs[-2].profile.stacks():
                old[st] = old.get(st, 0) + v
            grown = {st: v - old.get(st, 0) for st, v in cur.items() if v > old.get(st, 0)}
            if grown:
                cur, how = grown, "grew most between the last two goroutine profiles"
        stack, n = max(cur.items(), key=lambda kv: (kv[1], kv[0]))
        entry = next((f for f in stack if _is_app_frame(f)), stack[0] if stack else "?")
        lines.append(f"Goroutine profile at {fmt_clock(newest.t)} UTC: {n} goroutines "
                     f"({how}) started in {entry}, blocked at {_short(stack)}")
        return stack

    def _lock_contention(self, start: int, end: int) -> Finding:
        rid, title = "GKD003-lock-contention", "Lock contention"
        mutex = self._profile_rate("mutex", start, end, "delay")
        block = self._profile_rate("block", start, end, "delay")
        support = self._futex_support(start, end)
        if mutex is None and block is None:
            why = self._why_missing(("mutex", "block"))
            return Finding(rid, "not_measured", title + ": not measured", tuple([why] + support),
                           "Enable runtime.SetMutexProfileFraction(5) and "
                           "runtime.SetBlockProfileRate in the app, then fetch the mutex profile.",
                           Related("futex" if support else "findings"))
        lines: list[str] = []
        best_rate = 0.0
        best_stack: Stack = ()
        src = ""
        win = (start, end)
        if mutex is not None:
            stacks, secs, ps = mutex
            stacks = [(st, v) for st, v in stacks if not _self_inflicted(st)]
            tot = sum(v for _, v in stacks)
            rate = tot / secs if secs else 0.0
            win = (ps.start if ps.seconds else ps.t - int(secs * NS), ps.t)
            lines.append(f"mutex profile: {fmt_ns(tot)} of waiting on contended locks over "
                         f"{secs:.0f} s ({fmt_ns(rate)} per second) in {fmt_window(*win)}")
            if stacks:
                st, v = max(stacks, key=lambda x: x[1])
                lines.append(f"Top contended lock released at {_short(st)} ({v / max(tot, 1):.0%})")
                best_stack, src = st, "mutex"
            best_rate = rate
        if block is not None:
            stacks, secs, ps = block
            locks = [(st, v) for st, v in stacks
                     if _has_marker(st, LOCK_MARKERS) and not _self_inflicted(st)]
            tot = sum(v for _, v in locks)
            rate = tot / secs if secs else 0.0
            bwin = (ps.start if ps.seconds else ps.t - int(secs * NS), ps.t)
            lines.append(f"block profile: {fmt_ns(tot)} blocked in sync.Mutex/RWMutex over "
                         f"{secs:.0f} s ({fmt_ns(rate)} per second) in {fmt_window(*bwin)}")
            if rate > best_rate and locks:
                best_rate = rate
                best_stack, src = max(locks, key=lambda x: x[1])[0], "block"
                win = bwin
        lines.extend(support)
        if best_rate < self.th.mutex_warn_ns_per_s:
            return Finding(rid, "info", "No significant lock contention", tuple(lines), "",
                           Related("calltree", best_stack, src), 0.0, win)
        sev = "critical" if best_rate >= self.th.mutex_crit_ns_per_s else "warning"
        return Finding(
            rid, sev,
            f"Lock contention: goroutines wait {fmt_ns(best_rate)} per second on mutexes",
            tuple(lines),
            "Shorten the critical section on the highlighted stack, shard the lock, or "
            "replace it (atomic, sync.Map, per-goroutine state). The mutex profile names the "
            "holder that released it late; the block profile names the waiters.",
            Related("calltree", best_stack, src), min(1.0, best_rate / self.th.mutex_crit_ns_per_s),
            win)

    def _why_missing(self, kinds: tuple[str, ...]) -> str:
        notes = []
        for k in kinds:
            q = self.profiles.get(k)
            if not q:
                notes.append(f"no {k} profile fetched")
            elif q[-1].empty:
                notes.append(f"{k} profile empty" + (f" ({q[-1].note})" if q[-1].note else
                             " (the app has not enabled it: runtime.SetMutexProfileFraction / "
                             "runtime.SetBlockProfileRate)"))
        return "; ".join(notes) + "."

    def _channel_waits(self, start: int, end: int) -> Finding:
        rid, title = "GKD004-channel-waits", "Goroutines blocked on channels"
        block = self._profile_rate("block", start, end, "delay")
        if block is None:
            return self._not_measured(rid, title + ": not measured", self._why_missing(("block",)),
                                      "calltree")
        stacks, secs, ps = block
        stacks = [(st, v) for st, v in stacks if not _self_inflicted(st)]
        allchan = [(st, v) for st, v in stacks if _has_marker(st, CHAN_MARKERS)]
        # Waits whose call site is in the standard library (an HTTP client waiting
        # for its response, a server reading a request) are I/O, not the app's
        # own channel plumbing; they are listed but do not trigger the rule.
        user = [(st, v) for st, v in allchan
                if _is_user_frame(_blocking_caller(st, CHAN_MARKERS))]
        io_wait = sum(v for _, v in allchan) - sum(v for _, v in user)
        # A select is mostly an idle loop (ticker, ctx.Done, time.After): listed,
        # but only plain sends and receives trigger the rule.
        chans = [(st, v) for st, v in user if not _leaf_is(st, SELECT_MARKERS)]
        select_wait = sum(v for _, v in user) - sum(v for _, v in chans)
        tot = sum(v for _, v in chans)
        alltot = sum(v for _, v in stacks)
        rate = tot / secs if secs else 0.0
        win = (ps.start if ps.seconds else ps.t - int(secs * NS), ps.t)
        lines = [f"block profile: {fmt_ns(tot)} blocked in the app's channel operations "
                 f"({tot / max(alltot, 1):.0%} of all blocking) over {secs:.0f} s, "
                 f"{fmt_ns(rate)} per second, in {fmt_window(*win)}"]
        if io_wait:
            lines.append(f"{fmt_ns(io_wait)} more in channel waits inside the standard library "
                         "(HTTP client/server I/O), not counted")
        if select_wait:
            lines.append(f"{fmt_ns(select_wait)} more in the app's select statements (usually "
                         "idle loops on tickers/timeouts), not counted")
        stack: Stack = ()
        if chans:
            stack, v = max(chans, key=lambda x: x[1])
            lines.append(f"Longest waits at {_short(stack)} ({v / max(tot, 1):.0%})")
        if rate < self.th.chan_warn_ns_per_s:
            return Finding(rid, "info", "No significant channel waits", tuple(lines), "",
                           Related("calltree", stack, "block"), 0.0, win)
        sev = "critical" if rate >= self.th.chan_crit_ns_per_s else "warning"
        return Finding(
            rid, sev, f"Channel waits: goroutines blocked {fmt_ns(rate)} per second on channels",
            tuple(lines),
            "Look at the highlighted send/receive: a slow consumer, an unbuffered channel "
            "between stages of different speed, or a worker pool too small for the load. "
            "Add buffering or workers, or apply backpressure upstream.",
            Related("calltree", stack, "block"), min(1.0, rate / self.th.chan_crit_ns_per_s), win)

    def _gc_pressure(self, start: int, end: int) -> Finding:
        rid, title = "GKD005-gc-pressure", "GC / heap pressure"
        gcs = self._w["gc"].between(start, end)
        stacks, cores, src, cwin = self._cpu(start, end)
        heaps = [p for p in self.profiles.get("heap", ()) if p.profile and not p.empty]
        if not gcs and not stacks and not heaps:
            return self._not_measured(rid, title + ": not measured",
                                      "No GC events, CPU samples or heap profile.", "findings")
        lines: list[str] = []
        sev_score = 0.0
        sev = "info"
        win = cwin
        stack: Stack = ()
        why: list[str] = []  # what tripped the rule, for the title
        if gcs:
            s, e = self._span(gcs)
            win = (s, e)
            cycles = sum(int(f["cycles"]) for f in gcs)
            secs = max(1e-9, (e - s) / NS)
            rate = cycles / secs
            pause = sum(int(f.get("pause_ns") or 0) for f in gcs)
            cycle = sum(int(f.get("cycle_ns") or 0) for f in gcs)
            line = f"{cycles} GC cycles in {fmt_window(s, e)} ({rate:.1f}/s)"
            if pause:
                line += f", {fmt_ns(pause)} total pause"
            if cycle:
                line += f", a GC cycle running {cycle / (secs * NS):.0%} of the time"
            lines.append(line)
            heap = [int(f["heap_bytes"]) for f in gcs if f.get("heap_bytes")]
            if len(heap) >= 2:
                lines.append(f"heap {fmt_bytes(heap[0])} → {fmt_bytes(heap[-1])}")
                if heap[0] and heap[-1] / heap[0] >= self.th.heap_growth_factor and \
                        heap[-1] - heap[0] >= self.th.heap_min_growth_bytes:
                    sev, sev_score = "warning", max(sev_score, 0.5)
                    why.append(f"heap {fmt_bytes(heap[0])} → {fmt_bytes(heap[-1])}")
            if rate >= self.th.gc_crit_per_s:
                sev, sev_score = "critical", max(sev_score, 1.0)
                why.append(f"{rate:.0f} GC cycles/s")
            elif rate >= self.th.gc_warn_per_s and sev != "critical":
                sev, sev_score = "warning", max(sev_score, rate / self.th.gc_crit_per_s)
                why.append(f"{rate:.0f} GC cycles/s")
        if stacks:
            tot = sum(v for _, v in stacks)
            gcv = sum(v for st, v in stacks if _has_marker(st, GC_MARKERS))
            alloc = sum(v for st, v in stacks if _has_marker(st, ("runtime.mallocgc",)))
            share = gcv / tot if tot else 0.0
            lines.append(f"GC work is {share:.0%} of CPU samples, allocation (mallocgc) "
                         f"{alloc / max(tot, 1):.0%}, at {cores:.2f} CPU "
                         f"({src}, {fmt_window(*cwin)})")
            if cores >= self.th.syscall_min_cpu:
                if share >= self.th.gc_crit_cpu_share:
                    sev, sev_score = "critical", max(sev_score, share)
                    why.append(f"GC is {share:.0%} of CPU")
                elif share >= self.th.gc_warn_cpu_share and sev != "critical":
                    sev, sev_score = "warning", max(sev_score, share)
                    why.append(f"GC is {share:.0%} of CPU")
            allocs = [(st, v) for st, v in stacks if _has_marker(st, ("runtime.mallocgc",))]
            if allocs:
                stack = _caller_of(max(allocs, key=lambda x: (x[1], x[0]))[0], "runtime.mallocgc")
        if heaps:
            hp = heaps[-1]
            assert hp.profile is not None
            try:
                inuse = hp.profile.stacks("inuse_space")
                alloc_sp = hp.profile.stacks("alloc_space")
            except ProfileError:
                inuse, alloc_sp = hp.profile.stacks(), []
            lines.append(f"heap profile: {fmt_bytes(sum(v for _, v in inuse))} in use (sampled)")
            top = [r for r in top_functions(alloc_sp or inuse, None) if _is_app_frame(r.name)]
            if top:
                tot = sum(v for _, v in (alloc_sp or inuse))
                lines.append(f"Top allocator: {top[0].name} ({top[0].cum / max(tot, 1):.0%} of "
                             f"{'allocated' if alloc_sp else 'in-use'} bytes)")
                stack = stack or _hot_stack(alloc_sp or inuse, top[0].name)
            if len(heaps) >= 2:
                old = heaps[-2].profile
                assert old is not None
                try:
                    a = old.total("inuse_space")
                    b = hp.profile.total("inuse_space")
                    allocated = hp.profile.total("alloc_space") - old.total("alloc_space")
                except ProfileError:
                    a = b = allocated = 0
                secs = (hp.t - heaps[-2].t) / NS
                if secs > 0 and allocated > 0:
                    rate = allocated / secs
                    lines.append(f"allocating {fmt_bytes(rate)}/s (heap profiles "
                                 f"{fmt_window(heaps[-2].t, hp.t)})")
                    if rate >= self.th.alloc_crit_bytes_per_s:
                        sev, sev_score = "critical", max(sev_score, 0.8)
                        why.append(f"allocating {fmt_bytes(rate)}/s")
                    elif rate >= self.th.alloc_warn_bytes_per_s and sev != "critical":
                        sev = "warning"
                        sev_score = max(sev_score, 0.3 + 0.2 * min(
                            1.0, rate / self.th.alloc_crit_bytes_per_s))
                        why.append(f"allocating {fmt_bytes(rate)}/s")
                if a and b / a >= self.th.heap_growth_factor and \
                        b - a >= self.th.heap_min_growth_bytes:
                    lines.append(f"in-use heap grew {fmt_bytes(a)} → {fmt_bytes(b)} between "
                                 "the last two heap profiles")
                    if sev == "info":
                        sev, sev_score = "warning", 0.5
                    why.append(f"in-use heap {fmt_bytes(a)} → {fmt_bytes(b)}")
        if sev == "info":
            return Finding(rid, "info", "GC and heap look normal", tuple(lines), "",
                           Related("calltree", stack, "heap" if heaps else ""), 0.0, win)
        return Finding(
            rid, sev, "GC pressure: " + ", ".join(why or ["the GC is kept busy"]),
            tuple(lines),
            "Cut allocations on the highlighted path (reuse buffers, sync.Pool, avoid "
            "per-request maps/fmt), or trade memory for CPU with GOGC/GOMEMLIMIT. If the "
            "in-use heap keeps growing, look for a cache or slice that is never trimmed.",
            Related("calltree", stack, "heap" if heaps else "ebpf"), sev_score, win)

    def _cpu_hotspot(self, start: int, end: int) -> Finding:
        rid, title = "GKD006-cpu-hotspot", "CPU hot spot"
        stacks, cores, src, win = self._cpu(start, end)
        if not stacks:
            return self._not_measured(rid, title + ": not measured",
                                      "No CPU samples (eBPF cpu_stacks off and no CPU profile "
                                      "fetched).", "calltree")
        tot = sum(v for _, v in stacks)
        rows = _top(stacks)
        app = [r for r in rows if _is_app_frame(r.name)]
        lines = [f"{cores:.2f} CPU used in {fmt_window(*win)} ({src})"]
        if rows:
            r0 = rows[0]
            lines.append(f"Top function overall: {r0.name} {r0.flat / tot:.0%} flat, "
                         f"{r0.cum / tot:.0%} cum")
        if not app:
            return Finding(rid, "info", "CPU time is all in the Go runtime", tuple(lines), "",
                           Related("calltree"), 0.0, win)
        top = app[0]
        share = top.flat / tot
        lines.append(f"Top app function: {top.name} {share:.0%} flat, {top.cum / tot:.0%} cum")
        stack = _hot_stack(stacks, top.name)
        if share >= self.th.hotspot_warn_share and cores >= self.th.hotspot_min_cpu:
            return Finding(
                rid, "warning", f"CPU hot spot: {top.name} uses {share:.0%} of {cores:.2f} CPU",
                tuple(lines),
                "Open the highlighted path in the call tree; optimise or cache that function, "
                "or move the work off the request path. Export the CPU profile for "
                "`go tool pprof -list` line detail.",
                Related("calltree", stack, "ebpf" if "eBPF" in src else "cpu"),
                share * min(1.0, cores), win)
        sev_title = f"Busiest function: {top.name} ({share:.0%} of {cores:.2f} CPU)"
        return Finding(rid, "info", sev_title, tuple(lines), "",
                       Related("calltree", stack, "ebpf" if "eBPF" in src else "cpu"), 0.0, win)

    def _syscall_heavy(self, start: int, end: int) -> Finding:
        rid, title = "GKD007-syscall-heavy", "Syscall-heavy behaviour"
        stacks, cores, src, win = self._cpu(start, end)
        fx = self._w["futex"].between(start, end)
        if not stacks and not fx:
            return self._not_measured(rid, title + ": not measured",
                                      "No CPU samples and no futex counts.", "calltree")
        lines: list[str] = []
        sev, score = "info", 0.0
        stack: Stack = ()
        if stacks:
            tot = sum(v for _, v in stacks)
            sc = [(st, v) for st, v in stacks if _has_marker(st, SYSCALL_MARKERS)]
            share = sum(v for _, v in sc) / tot if tot else 0.0
            lines.append(f"{share:.0%} of CPU samples are inside syscalls "
                         f"(syscall.Syscall*, internal/runtime/syscall) at {cores:.2f} CPU "
                         f"({src}, {fmt_window(*win)})")
            if sc:
                callers: dict[str, int] = {}
                for st, v in sc:
                    c = _syscall_caller(st)
                    callers[c] = callers.get(c, 0) + v
                c, v = max(callers.items(), key=lambda kv: (kv[1], kv[0]))
                lines.append(f"Most syscall time from {c} ({v / max(tot, 1):.0%} of samples)")
                stack = _hot_stack(sc, c)
            if share >= self.th.syscall_warn_share and cores >= self.th.syscall_min_cpu:
                sev, score = "warning", share
        if fx:
            s, e = self._span(fx)
            waits = sum(int(f["waits"]) for f in fx)
            rate = waits / max(1e-9, (e - s) / NS)
            lines.append(f"{waits} futex waits ({rate:.0f}/s) in {fmt_window(s, e)}: "
                         "in Go, a high rate means threads parking and waking (scheduler churn), "
                         "not lock contention")
            if rate >= self.th.futex_churn_per_s:
                sev, score = "warning", max(score, min(1.0, rate / (5 * self.th.futex_churn_per_s)))
        if sev == "info":
            return Finding(rid, "info", "Syscall load is normal", tuple(lines), "",
                           Related("calltree", stack, "ebpf"), 0.0, win)
        return Finding(
            rid, "warning", "Syscall-heavy: much CPU goes into system calls",
            tuple(lines),
            "Batch small reads/writes (bufio), avoid per-request file opens/stat, reuse "
            "connections. Check strace -c -f -p PID or the futex pane for which calls.",
            Related("calltree", stack, "ebpf"), score, win)

    def _target_exited(self) -> Finding:
        ex = self.exit or {}
        what = ", ".join(f"{k}={ex[k]}" for k in ("reason", "exit_code", "signal") if k in ex)
        t = int(ex.get("t", 0))
        return Finding("GKD008-target-exited", "critical", "The target process exited",
                       (f"{what} at {fmt_clock(t)} UTC",),
                       "Check the container's logs and restart count; the agent re-attaches "
                       "when the container restarts.", Related("findings"), 1.0, (t, t))


# Findings that name a more specific problem than "the quota is exhausted". When
# one of them fires while the pod is throttled, it is the headline; a plain CPU
# hot spot is not on the list: it is the throttling's own explanation.
SPECIFIC_RULES = ("GKD002", "GKD003", "GKD004", "GKD005", "GKD007")


def _specific_before_throttling(findings: list[Finding]) -> list[Finding]:
    thr = next((f for f in findings if f.rule_id.startswith("GKD001") and f.is_problem), None)
    if thr is None:
        return findings
    out = []
    for f in findings:
        if f.is_problem and f.rule_id.startswith(SPECIFIC_RULES):
            sev = f.severity if f.rank[0] >= thr.rank[0] else thr.severity
            f = dataclasses.replace(
                f, severity=sev, score=max(f.score, thr.score + 0.01),
                evidence=f.evidence + (f"The pod is also CPU-throttled ({thr.title}); this is "
                                       "the more specific problem, look at it first.",))
        out.append(f)
    return out


def evaluate_frames(frames: Iterable[dict[str, Any]], now_ns: int | None = None,
                    window_s: float = 60.0) -> list[Finding]:
    """One-shot: feed ``frames`` (in order) to a fresh engine and evaluate at the
    last frame's time (the console calls this on its recent frames)."""
    eng = FindingsEngine(window_s=window_s)
    for f in frames:
        eng.feed(f)
    return eng.evaluate(now_ns)


def _hot_stack(stacks: list[tuple[Stack, int]], name: str) -> Stack:
    """The heaviest stack through ``name``, cut at ``name`` (for highlighting)."""
    best: dict[Stack, int] = {}
    for st, v in stacks:
        if name in st:
            cut = st[: st.index(name) + 1]
            best[cut] = best.get(cut, 0) + v
    if not best:
        return ()
    return max(best.items(), key=lambda kv: (kv[1], kv[0]))[0]


def _caller_of(stack: Stack, name: str) -> Stack:
    """The stack up to the nearest app frame above ``name``."""
    if name not in stack:
        return stack
    i = stack.index(name)
    j = i
    while j > 0 and not _is_app_frame(stack[j - 1]):
        j -= 1
    return stack[: max(j, 1)]


def _syscall_caller(stack: Stack) -> str:
    """The innermost non-runtime, non-syscall frame above the syscall entry."""
    for f in reversed(stack):
        if _is_app_frame(f) and not f.startswith(SYSCALL_MARKERS) and not f.startswith(
            ("syscall.", "os.(*File).", "internal/poll.", "os.")
        ):
            return f
    for f in reversed(stack):
        if _is_app_frame(f) and not f.startswith(SYSCALL_MARKERS):
            return f
    return stack[-1] if stack else "?"
