"""Console benchmark for issue 4: live load (the 5,000-pod filter is bench_pod_filter.py).

``python -m tests.bench.bench_console_live [--quick]`` prints the table;
``live_load(quick)`` returns a ``report.Section`` for the
``make bench`` harness. Both run the real App headless (Textual's test driver:
it composes and renders every frame, it only does not write to a terminal).

- live_load: a session feeding 10,000 stack samples per second (2,000 distinct
  stacks, 24 frames deep) plus goroutine, throttle, futex and GC frames every
  second, all panes live. Measures the console process's CPU (all threads:
  frame reader, refresh worker, UI), the refresh timings (snapshot build in the
  worker, wait for the UI thread, applying it to the widgets) and RSS growth.
  The frame generator runs in the same process; it replays prebuilt frames so
  its own cost is small (stated in the table).
- console_hour: the same load for an hour; RSS sampled every minute, growth
  from minute 10 (windows, findings and evidence full) to minute 60.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import threading
import time
from collections import deque
from pathlib import Path

from bpf import schema
from tests.bench import report
from tui.app import GoDebugApp
from tui.screens.attached import AttachedScreen
from tui.sources.base import ContainerInfo, PodInfo, SessionInfo, SystemClock
from tui.sources.recorded import RecordedPodSource

NS = 1_000_000_000


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def synthetic_pod(i: int, ns: str = "load") -> PodInfo:
    return PodInfo(
        namespace=ns,
        name=f"svc-{i % 97}-{i:05d}",
        uid=f"uid-{i}",
        status="Running",
        ready="1/1",
        restarts=i % 3,
        created=time.time() - 3600 - i,
        node=f"node-{i % 20}",
        cpu_limit="500m",
        pprof_port=6060,
        pod_ip=f"10.88.{i // 250}.{i % 250}",
        containers=(ContainerInfo(name="app", image="svc:1"),),
        labels={"app": f"svc-{i % 97}", "tier": "backend" if i % 2 else "frontend"},
    )


class LoadSession:
    """A Session that sends ``rate`` stack samples per second, in real time."""

    def __init__(self, rate: int = 10_000, distinct: int = 2_000, depth: int = 24) -> None:
        self.info = SessionInfo(
            pod=synthetic_pod(0), container="app", node="node-0", transport="local"
        )
        # Bounded: over an hour the screen's commands must not grow the harness itself.
        self.sent: deque[dict] = deque(maxlen=100)
        self._closed = threading.Event()
        rnd = random.Random(7)
        names = [f"main.func{i}" for i in range(600)]
        stacks = []
        for _ in range(distinct):
            d = rnd.randint(depth // 2, depth)
            stacks.append(("runtime.goexit", *rnd.sample(names, d - 1)))
        # Prebuilt payloads (varied counts), so the generator costs little itself.
        self._payloads = []
        for _variant in range(8):
            counts = [0] * distinct
            for _ in range(rate):
                counts[rnd.randrange(distinct)] += 1
            funcs, packed = schema.intern_stacks(
                (s, c) for s, c in zip(stacks, counts, strict=True) if c
            )
            self._payloads.append((funcs, packed, sum(counts)))

    def frames(self):
        start = time.time()
        yield schema.make_frame(
            "hello",
            agent="bench",
            host="node-0",
            kernel="6.1",
            target={},
            collectors={},
            clock_offset_ns=0,
        )
        yield schema.make_frame("collector", name="futex", state="on", reason="bench")
        i = 0
        goroutines = 100
        while not self._closed.is_set():
            i += 1
            due = start + i
            while time.time() < due:
                if self._closed.wait(min(0.05, max(0.0, due - time.time()))):
                    return
            t = time.time_ns()
            funcs, packed, n = self._payloads[i % len(self._payloads)]
            yield schema.make_frame(
                "cpu_stacks",
                t=t,
                interval_ns=NS,
                hz=99,
                samples=n,
                lost=0,
                funcs=funcs,
                stacks=packed,
            )
            goroutines += 1
            yield schema.make_frame("goroutines", t=t, count=goroutines, source="pprof_index")
            cg = {
                "nr_periods": 10,
                "nr_throttled": 4,
                "throttled_ns": 300_000_000,
                "usage_ns": 900_000_000,
                "quota_us": 100000,
                "period_us": 100000,
            }
            yield schema.make_frame(
                "throttle", t=t, interval_ns=NS, cgroup_version="v2", container=cg, pod=cg
            )
            yield schema.make_frame(
                "futex",
                t=t,
                interval_ns=NS,
                waits=2000,
                wait_ns=3 * 10**8,
                by_op={},
                hist=[[4, 500], [8, 1000], [12, 500]],
                top_threads=[{"tid": 1, "comm": "svc", "waits": 900, "wait_ns": 10**8}],
            )
            yield schema.make_frame("gc", t=t, interval_ns=NS, cycles=2, source="bench")

    def send(self, command: dict) -> None:
        self.sent.append(command)

    def close(self) -> None:
        self._closed.set()


class LoadFactory:
    def __init__(self, session: LoadSession) -> None:
        self.session = session

    def attach(self, pod: PodInfo, container: str | None = None) -> LoadSession:
        return self.session


async def _live(seconds: float, warmup: float, rate: int) -> dict:
    session = LoadSession(rate=rate)
    pod = session.info.pod
    app = GoDebugApp(
        RecordedPodSource([pod]),
        LoadFactory(session),
        SystemClock(),
        namespace=pod.namespace,
        initial_pod=pod.key,
    )
    async with app.run_test(size=(160, 50)) as pilot:
        while not isinstance(app.screen, AttachedScreen):
            await pilot.pause(0.05)
        screen = app.screen
        await asyncio.sleep(warmup)
        rss0, cpu0, wall0 = rss_mib(), cpu_s(), time.monotonic()
        screen.timings.clear()
        frames0 = screen.model.frames_seen
        await asyncio.sleep(seconds / 2)
        rss_mid = rss_mib()
        await asyncio.sleep(seconds / 2)
        rss1, cpu1, wall1 = rss_mib(), cpu_s(), time.monotonic()
        timings = list(screen.timings)
        samples = screen.snapshot.calltree.total if screen.snapshot else 0
        frames = screen.model.frames_seen - frames0
    build = [b * 1000 for b, _, _ in timings]
    wait = [w * 1000 for _, w, _ in timings]
    apply = [a * 1000 for _, _, a in timings]
    total = [(b + w + a) * 1000 for b, w, a in timings]
    return {
        "seconds": wall1 - wall0,
        "cpu_pct": (cpu1 - cpu0) / (wall1 - wall0) * 100,
        "refreshes": len(timings),
        "frames": frames,
        "samples_in_window": samples,
        "build_p50": pct(build, 0.5),
        "build_p95": pct(build, 0.95),
        "wait_p50": pct(wait, 0.5),
        "apply_p50": pct(apply, 0.5),
        "apply_p95": pct(apply, 0.95),
        "total_p50": pct(total, 0.5),
        "total_p95": pct(total, 0.95),
        "rss0": rss0,
        "rss_mid": rss_mid,
        "rss1": rss1,
    }


def live_load(quick: bool = False) -> report.Section:
    """10,000 samples/s with all panes live: console CPU, refresh timings, memory."""
    seconds, warmup = (20.0, 10.0) if quick else (300.0, 30.0)
    r = asyncio.run(_live(seconds, warmup, 10_000))
    sec = report.Section(
        "console_live",
        "Console under load: 10,000 stack samples/s, all panes live",
        goal="console CPU under 25 % of a core; memory flat (under 10 % growth)",
    )
    t = report.Table(["measure", "value"])
    t.add("measured for", f"{r['seconds']:.0f} s after {warmup:.0f} s warm-up")
    t.add("frames folded in", f"{r['frames']:,} ({r['frames'] / r['seconds']:.1f}/s)")
    t.add("console CPU (all threads, incl. the frame generator)", f"{r['cpu_pct']:.1f} % of a core")
    t.add("refreshes", f"{r['refreshes']} ({r['refreshes'] / r['seconds']:.2f}/s)")
    t.add("snapshot build (worker) p50 / p95", f"{r['build_p50']:.1f} / {r['build_p95']:.1f} ms")
    t.add("wait for UI thread p50", f"{r['wait_p50']:.1f} ms")
    t.add("apply to widgets p50 / p95", f"{r['apply_p50']:.1f} / {r['apply_p95']:.1f} ms")
    t.add("refresh total p50 / p95", f"{r['total_p50']:.1f} / {r['total_p95']:.1f} ms")
    growth = (r["rss1"] - r["rss_mid"]) / r["rss_mid"] * 100 if r["rss_mid"] else 0.0
    t.add(
        "RSS start / middle / end",
        f"{r['rss0']:.0f} / {r['rss_mid']:.0f} / {r['rss1']:.0f} MiB (second half {growth:+.1f} %)",
    )
    sec.tables.append(t)
    sec.notes.append(
        "Terminal output is not included: the headless driver renders every "
        "frame but writes no bytes; over SSH add the terminal's own cost."
    )
    return sec


async def _hour(seconds: float, sample_s: float, rate: int) -> dict:
    """Stream for ``seconds``; sample RSS, CPU and the model's sizes every ``sample_s``."""
    session = LoadSession(rate=rate)
    pod = session.info.pod
    app = GoDebugApp(
        RecordedPodSource([pod]),
        LoadFactory(session),
        SystemClock(),
        namespace=pod.namespace,
        initial_pod=pod.key,
    )
    samples: list[dict] = []
    async with app.run_test(size=(160, 50)) as pilot:
        while not isinstance(app.screen, AttachedScreen):
            await pilot.pause(0.05)
        screen = app.screen
        wall0, cpu0 = time.monotonic(), cpu_s()
        frames0, refreshes0 = screen.model.frames_seen, screen.refreshes
        n = 0
        while True:
            elapsed = time.monotonic() - wall0
            samples.append(
                {
                    "t": elapsed,
                    "rss": rss_mib(),
                    "cpu_pct": (cpu_s() - cpu0) / elapsed * 100 if elapsed >= 1 else None,
                    "py_blocks": sys.getallocatedblocks(),
                    "stacks": len(screen.model.calltree._since_attach),
                    "frames": screen.model.frames_seen - frames0,
                }
            )
            s = samples[-1]
            print(
                f"console_hour: {elapsed / 60:5.1f} min  RSS {s['rss']:.1f} MiB  "
                f"CPU {s['cpu_pct'] or 0:.1f} %  frames {s['frames']:,}",
                file=sys.stderr,
                flush=True,
            )
            if elapsed >= seconds:
                break
            n += 1
            await asyncio.sleep(max(0.0, wall0 + n * sample_s - time.monotonic()))
        refreshes = screen.refreshes - refreshes0
    return {"samples": samples, "refreshes": refreshes, "seconds": samples[-1]["t"]}


def _nearest(samples: list[dict], t: float) -> dict:
    return min(samples, key=lambda s: abs(s["t"] - t))


def console_hour(quick: bool = False) -> report.Section:
    """An hour at 10,000 samples/s, all panes live: RSS every minute, growth 10 → 60 min."""
    seconds, sample_s = (180.0, 10.0) if quick else (3600.0, 60.0)
    r = asyncio.run(_hour(seconds, sample_s, 10_000))
    samples, last = r["samples"], r["samples"][-1]
    scale = seconds / 3600  # checkpoints at 10/30/60 min of an hour (scaled for --quick)
    marks = {"start": 0.0, "10 min": 600 * scale, "30 min": 1800 * scale, "60 min": seconds}
    at = {name: _nearest(samples, t) for name, t in marks.items()}
    growth = (at["60 min"]["rss"] - at["10 min"]["rss"]) / at["10 min"]["rss"] * 100
    sec = report.Section(
        "console_hour",
        "Console memory over an hour: 10,000 stack samples/s, all panes live",
        goal="memory flat: under 10 % RSS growth from minute 10 to minute 60",
    )
    t = report.Table(["measure", "value"])
    t.add("streamed for", f"{r['seconds'] / 60:.1f} min, RSS sampled every {sample_s:.0f} s")
    t.add("frames folded in", f"{last['frames']:,} ({last['frames'] / r['seconds']:.1f}/s)")
    t.add("refreshes", f"{r['refreshes']:,} ({r['refreshes'] / r['seconds']:.2f}/s)")
    t.add(
        "console CPU over the run (all threads, incl. the frame generator)",
        f"{last['cpu_pct']:.1f} % of a core",
    )
    for name in marks:
        s = at[name]
        t.add(f"RSS at {name}", f"{s['rss']:.1f} MiB (sampled at {s['t'] / 60:.1f} min)")
    t.add("RSS growth, minute 10 → 60", f"{growth:+.1f} %")
    t.add(
        "distinct stacks in the since-attach tree, start → end",
        f"{samples[0]['stacks']:,} → {last['stacks']:,}",
    )
    sec.tables.append(t)
    curve = report.Table(["minute", "RSS MiB", "Python heap blocks", "CPU % so far"])
    rows = samples[:: max(1, round(len(samples) / 12))]  # a small table: about every 5 min
    if rows[-1] is not last:
        rows.append(last)
    for s in rows:
        cpu = "–" if s["cpu_pct"] is None else f"{s['cpu_pct']:.1f}"
        curve.add(f"{s['t'] / 60:.1f}", f"{s['rss']:.1f}", f"{s['py_blocks']:,}", cpu)
    sec.tables.append(curve)
    sec.notes.append(
        "The synthetic load has 2,000 distinct stacks (24 frames deep), so the "
        "since-attach tree plateaus; the 10 s/60 s windows, series, findings and "
        "export evidence are bounded by time. The headless driver renders every "
        "frame but writes no bytes to a terminal. The machine is shared: CPU is "
        "what this process used, whatever else ran."
    )
    return sec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.bench_console_live")
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    p.add_argument("which", nargs="*", default=["live_load"])
    args = p.parse_args(argv)
    for name in args.which:
        sec = {"live_load": live_load, "console_hour": console_hour}[name](args.quick)
        print(f"## {sec.title}\n\nGoal: {sec.goal}\n")
        for table in sec.tables:
            print(table.markdown() + "\n")
        for note in sec.notes:
            print(note + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
