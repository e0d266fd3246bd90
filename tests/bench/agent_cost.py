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
        self.thread = threading.Thread(target=self._run, args=(svc, seconds), daemon=True)

    @staticmethod
    def _run(svc: procs.Service, seconds: float) -> None:
        # Windows under a minute: wrk reports longer runs in minutes ("2.5m").
        end = time.monotonic() + seconds
        while (left := int(end - time.monotonic())) >= 2:
            procs.run_load(svc, min(50, left))  # wrk takes whole seconds

    def __enter__(self) -> BackgroundLoad:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()


def _first_data(a: procs.AgentRun) -> float | None:
    times = [a.first[k] for k in DATA_KINDS if k in a.first]
    return min(times) if times else None


EBPF = ("cpu_stacks", "futex", "gc", "goroutines_uprobe")


def smaps_mib(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) in MiB, from smaps_rollup."""
    kib: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                kib[k] = int(v.split()[0])
    return {"RSS": kib["Rss"] / 1024, "PSS": kib["Pss"] / 1024,
            "USS": (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024}


def _measure(svc: procs.Service, window: float, *extra: str) -> dict[str, object]:
    """One agent run: start-up, then a steady window on the busy target."""
    with procs.agent(svc.pid, svc.pprof_port, *extra) as a:
        a.wait_started(300)  # past start-up: collectors attached (bcc compiled), drained once
        pid = a.proc.pid
        startup_cpu = procs.cpu_seconds(pid)
        after_start = smaps_mib(pid)
        t0, c0 = time.monotonic(), startup_cpu
        rss_max = 0
        while time.monotonic() - t0 < window:
            rss_max = max(rss_max, procs.memory_kib(pid)["VmRSS"])
            time.sleep(0.25)
        c1, t1 = procs.cpu_seconds(pid), time.monotonic()
        return {
            "cpu_pct": (c1 - c0) / (t1 - t0) * 100, "after_start": after_start,
            "rss_max": rss_max / 1024, "hwm": procs.memory_kib(pid)["VmHWM"] / 1024,
            "startup_cpu": startup_cpu, "window": t1 - t0, "on": a.collectors_on(),
            "frames": len(a.frames), "problems": a.problems(),
        }


def cost(quick: bool = False) -> Section:
    """Agent CPU (% of one core) and memory on a busy target: with the default
    collectors, and with every eBPF collector on."""
    window = 5 if quick else 20
    runs = {}
    with procs.faultsvc("healthy") as svc, BackgroundLoad(svc, 2 * (window + 60)):
        runs["defaults"] = _measure(svc, window)
        runs["all eBPF"] = _measure(svc, window, "--enable", ",".join(EBPF))
    d, e = runs["defaults"], runs["all eBPF"]
    t = Table(["measure", "default collectors", "every eBPF collector on", "goal"])
    t.add("agent CPU while attached (steady window)", f"{d['cpu_pct']:.2f} % of one core",
          f"{e['cpu_pct']:.2f} % of one core", "< 2 %")
    for k in ("RSS", "PSS", "USS"):
        t.add(f"{k} right after start-up", f"{d['after_start'][k]:.1f} MiB",
              f"{e['after_start'][k]:.1f} MiB", "< 100 MB" if k == "RSS" else "")
    t.add("RSS while attached (max over window)", f"{d['rss_max']:.1f} MiB",
          f"{e['rss_max']:.1f} MiB", "< 100 MB")
    t.add("compile peak RSS (VmHWM: bcc's compile at start)", f"{d['hwm']:.1f} MiB",
          f"{e['hwm']:.1f} MiB", "measured separately")
    t.add("agent CPU spent in start-up (incl. bcc compile)", f"{d['startup_cpu']:.2f} s",
          f"{e['startup_cpu']:.2f} s", "measured separately")
    s = Section("agent_cost", "Agent cost: CPU and memory while attached",
                "under 2 % of a core and under 100 MB RSS after start-up.", [t])
    s.notes.append(
        f"Default collectors on: {', '.join(d['on']) or 'none'}; every eBPF collector: "
        f"{', '.join(e['on']) or 'none'}. Steady window {d['window']:.0f} s each while wrk "
        f"saturates the healthy faultsvc; {d['frames']} and {e['frames']} frames received. "
        "CPU from /proc/PID/stat (utime+stime); RSS, PSS and USS (private pages) from "
        "/proc/PID/smaps_rollup once start-up is over, the peak from VmHWM in /proc/PID/status."
    )
    s.notes.append(
        "All bcc collectors of a target share one compiled module (one clang/LLVM run, "
        "programs attached and detached per collector), and the agent drops its resident pages "
        "of libLLVM/libclang after compiling (madvise MADV_DONTNEED on their read-only "
        "mappings; a later compile faults them back in). What remains of bcc is mostly "
        "libLLVM's relocated data (~10 MiB, paid at import) and the compile's heap."
    )
    s.notes += [f"Agent error frame ({k}): {p}" for k, r in runs.items() for p in r["problems"]]
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
