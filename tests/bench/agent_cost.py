"""What the agent itself costs: CPU and memory while attached, time to first frame."""

from __future__ import annotations

import threading
import time

from tests.bench import procs
from tests.bench.overhead import DATA_KINDS
from tests.bench.report import Section, Table
from tests.bench.stats import median


class BackgroundLoad:
    """wrk against the service in a thread, so the agent watches a busy target."""

    def __init__(self, svc: procs.Service, seconds: float) -> None:
        self.thread = threading.Thread(target=procs.run_load, args=(svc, seconds), daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()


def _first_data(a: procs.AgentRun) -> float | None:
    times = [a.first[k] for k in DATA_KINDS if k in a.first]
    return min(times) if times else None


def cost(quick: bool = False) -> Section:
    """Agent CPU (% of one core) and RSS over a steady window on a busy target."""
    window = 5 if quick else 20
    with procs.faultsvc("healthy") as svc, BackgroundLoad(svc, window + 25):
        with procs.agent(svc.pid, svc.pprof_port) as a:
            a.wait_started()  # past start-up: collectors attached (bcc compiled), drained once
            pid = a.proc.pid
            startup_cpu = procs.cpu_seconds(pid)
            startup_mem = procs.memory_kib(pid)
            t0, c0 = time.monotonic(), startup_cpu
            rss_max = 0
            while time.monotonic() - t0 < window:
                rss_max = max(rss_max, procs.memory_kib(pid)["VmRSS"])
                time.sleep(0.25)
            c1, t1 = procs.cpu_seconds(pid), time.monotonic()
            end_mem = procs.memory_kib(pid)
            on = a.collectors_on()
            frames = len(a.frames)
            problems = a.problems()
    cpu_pct = (c1 - c0) / (t1 - t0) * 100
    t = Table(["measure", "value", "goal"])
    t.add("agent CPU while attached (steady window)", f"{cpu_pct:.2f} % of one core", "< 2 %")
    t.add("agent RSS while attached (max over window)", f"{rss_max / 1024:.1f} MiB", "< 100 MB")
    t.add("agent peak RSS (VmHWM, includes start-up)", f"{end_mem['VmHWM'] / 1024:.1f} MiB", "")
    t.add("agent CPU spent in start-up (incl. bcc compile)", f"{startup_cpu:.2f} s",
          "measured separately")
    t.add("RSS right after start-up", f"{startup_mem['VmRSS'] / 1024:.1f} MiB", "")
    s = Section("agent_cost", "Agent cost: CPU and memory while attached",
                "under 2 % of a core and under 100 MB RSS after start-up.", [t])
    s.notes.append(
        f"Default collectors on: {', '.join(on) or 'none'}; steady window {t1 - t0:.0f} s "
        f"while wrk saturates the healthy faultsvc; {frames} frames received. "
        "CPU from /proc/PID/stat (utime+stime), memory from /proc/PID/status."
    )
    s.notes += [f"Agent error frame: {p}" for p in problems]
    return s


def first_frame(quick: bool = False) -> Section:
    """Launch -> hello, launch -> first data frame, launch -> first CPU-stack frame."""
    launches = 2 if quick else 5
    rows: dict[str, list[float]] = {
        "hello": [], "first data frame": [], "every default collector on": [],
        "first cpu_stacks": [],
    }
    with procs.faultsvc("healthy", load=True) as svc:
        for _ in range(launches):
            with procs.agent(svc.pid, svc.pprof_port) as a:
                a.wait_started()
                wanted = a.wanted()
                rows["every default collector on"].append(max(
                    (t for k, t in a.first.items()
                     if k.startswith("collector:") and k.split(":")[1] in wanted),
                    default=float("nan"),
                ))
                if "collector:cpu_stacks:on" in a.first:
                    procs.wait_for(lambda a=a: "cpu_stacks" in a.first, 30, "a cpu_stacks frame")
                if "hello" in a.first:
                    rows["hello"].append(a.first["hello"])
                d = _first_data(a)
                if d is not None:
                    rows["first data frame"].append(d)
                if "cpu_stacks" in a.first:
                    rows["first cpu_stacks"].append(a.first["cpu_stacks"])
    t = Table(["from launch to", "median", "max", "launches"])
    for what, xs in rows.items():
        if xs:
            t.add(what, f"{median(xs):.2f} s", f"{max(xs):.2f} s", len(xs))
        else:
            t.add(what, "n/a", "n/a", 0)
    s = Section("first_frame", "Time to first frame", "under 3 s from launch.", [t])
    s.notes.append(
        "Launch = Popen of `/usr/bin/python3 -m bpf.agent --pid N` with default collectors; times "
        "are when the frame line arrived on the agent's stdout. The first data frame comes one "
        "interval (1 s) after the collectors start; cpu_stacks includes bcc's compile."
    )
    if not rows["first cpu_stacks"]:
        s.notes.append("No cpu_stacks frame: the CPU-stack collector was not on in this build.")
    return s
