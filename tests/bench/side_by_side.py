"""The same CPU sampling (49 Hz, user stacks, one process) by three tools in one run.

Our agent (only its cpu_stacks collector on), bcc's own ``profile`` tool
(``profile-bpfcc -F 49 -U -f -p PID``) and ``bpftrace`` (``profile:hz:49`` with
a pid filter, counting ``ustack``) each watch the healthy faultsvc while wrk
saturates it; a window with no tool is the baseline. Tools are rotated across
rounds. For each: time until it is sampling (it holds perf-event fds), CPU
and memory while sampling, what stopping costs (bcc and bpftrace walk and
symbolize their maps at exit), samples gathered per target CPU-second
(ideal: 49), and the target's throughput against the baseline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from tests.bench import procs
from tests.bench.report import Section, Table
from tests.bench.stats import median

HZ = 49
PROFILE_BCC = "/usr/sbin/profile-bpfcc"
BPFTRACE = "/usr/bin/bpftrace"


@dataclass
class ToolRun:
    """One tool sampling during one load window."""

    tool: str
    ready_s: float = float("nan")
    startup_cpu_s: float = float("nan")
    window_cpu_s: float = float("nan")
    rss_kib: int = 0
    peak_kib: int = 0
    exit_s: float = float("nan")
    exit_cpu_s: float = float("nan")
    samples: int = 0
    load: procs.Load | None = None
    note: str = ""
    top: str = ""
    extra: dict = field(default_factory=dict)


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so the tool's own handler is installed.

    A benchmark run from a background job inherits SIGINT ignored, and then
    bpftrace never sees the Ctrl-C that makes it print its maps and exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait4(proc: subprocess.Popen, sig: int, timeout: float = 60) -> tuple[float, float, int]:
    """Signal the process, reap it; (seconds to exit, total CPU s, peak RSS KiB)."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss
        if time.monotonic() - t0 > timeout:
            proc.kill()
        time.sleep(0.02)


def _collect(proc: subprocess.Popen, out: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        out.extend(proc.stdout)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _sample_external(tool: str, argv: list[str], svc: procs.Service, window: float) -> ToolRun:
    run = ToolRun(tool)
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as err:
        launched = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, preexec_fn=_default_sigint
        )
        reader = _collect(proc, lines)
        try:
            procs.wait_for(
                lambda: procs.perf_event_fds(proc.pid) > 0 or proc.poll() is not None,
                90, f"{tool} to start sampling",
            )
            if proc.poll() is not None:
                err.seek(0)
                raise procs.BenchError(f"{tool} exited at start: {err.read().strip()[:300]}")
            run.ready_s = time.monotonic() - launched
            run.startup_cpu_s = procs.cpu_seconds(proc.pid)
            run.load = procs.run_load(svc, window)
            run.window_cpu_s = procs.cpu_seconds(proc.pid) - run.startup_cpu_s
            run.rss_kib = procs.memory_kib(proc.pid)["VmRSS"]
            before_exit = procs.cpu_seconds(proc.pid)
        finally:
            run.exit_s, total_cpu, run.peak_kib = _wait4(proc, signal.SIGINT)
            reader.join(timeout=30)
        run.exit_cpu_s = total_cpu - before_exit
    run.samples, run.top = _parse(tool, lines)
    return run


def _parse(tool: str, lines: list[str]) -> tuple[int, str]:
    """(total samples, hottest leaf function) from a tool's printed output."""
    leaves: dict[str, int] = {}
    total = 0
    if tool == "bcc profile":
        # Folded: "comm;root;...;leaf count"
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            if stack and n.isdigit():
                total += int(n)
                leaf = stack.split(";")[-1]
                leaves[leaf] = leaves.get(leaf, 0) + int(n)
    else:
        # bpftrace: "@[\n    leaf+off\n    caller+off\n]: count"
        current: list[str] = []
        for line in lines:
            s = line.strip()
            if s.startswith("@["):
                current = []
            elif s.startswith("]:"):
                n = int(s[2:].strip() or 0)
                total += n
                if current:
                    leaf = current[0].split("+")[0]
                    leaves[leaf] = leaves.get(leaf, 0) + n
            elif s:
                current.append(s)
    top = max(leaves, key=leaves.get) if leaves else ""
    return total, top


def _sample_agent(svc: procs.Service, window: float) -> ToolRun:
    run = ToolRun("go-k8s-debug agent")
    args = ["--hz", str(HZ), "--enable", "cpu_stacks", "--disable", "goroutines,throttle"]
    with procs.agent(svc.pid, svc.pprof_port, *args) as a:
        procs.wait_for(
            lambda: any(k.startswith("collector:cpu_stacks:") for k in a.first)
            or a.proc.poll() is not None,
            90, "the agent's cpu_stacks collector to start or fail",
        )
        if "collector:cpu_stacks:on" not in a.first:
            why = "; ".join(a.problems()) or "see the hello frame"
            for c in next(iter(a.kinds("hello")), {}).get("collectors", []):
                if c["name"] == "cpu_stacks" and not c["available"]:
                    why = c["reason"]
            run.note = f"cpu_stacks not available: {why}"
            return run
        run.ready_s = a.first["collector:cpu_stacks:on"]
        pid = a.proc.pid
        run.startup_cpu_s = procs.cpu_seconds(pid)
        n0 = len(a.kinds("cpu_stacks"))
        run.load = procs.run_load(svc, window)
        time.sleep(1.1)  # the interval that ended with the window is drained one tick later
        frames = a.kinds("cpu_stacks")[n0:]
        run.window_cpu_s = procs.cpu_seconds(pid) - run.startup_cpu_s
        run.rss_kib = procs.memory_kib(pid)["VmRSS"]
        before_exit = procs.cpu_seconds(pid)
        leaves: dict[str, int] = {}
        for f in frames:
            run.samples += f.get("samples", 0)
            for count, path in f.get("stacks", []):
                if path:
                    leaf = f["funcs"][path[-1]]
                    leaves[leaf] = leaves.get(leaf, 0) + count
        run.top = max(leaves, key=leaves.get) if leaves else ""
        if a.proc.stdin:
            a.proc.stdin.close()
        run.exit_s, total_cpu, run.peak_kib = _wait4(a.proc, signal.SIGTERM)
        run.exit_cpu_s = total_cpu - before_exit
    return run


def run(quick: bool = False) -> Section:
    """Rotate baseline, agent, bcc profile and bpftrace over a few rounds."""
    window = 3 if quick else 8
    rounds = 1 if quick else 3
    if os.geteuid() != 0:
        raise procs.BenchError("eBPF sampling needs root: run `make bench` as root")
    tools = ["baseline", "agent", "bcc profile", "bpftrace"]
    results: dict[str, list[ToolRun]] = {t: [] for t in tools}
    with procs.faultsvc("healthy") as svc:
        procs.run_load(svc, 2)
        for r in range(rounds):
            order = tools[r % len(tools):] + tools[: r % len(tools)]
            for tool in order:
                if tool == "baseline":
                    results[tool].append(ToolRun("no tool", load=procs.run_load(svc, window)))
                elif tool == "agent":
                    results[tool].append(_sample_agent(svc, window))
                elif tool == "bcc profile":
                    argv = [PROFILE_BCC, "-F", str(HZ), "-U", "-f", "-p", str(svc.pid)]
                    results[tool].append(_sample_external(tool, argv, svc, window))
                else:
                    prog = f"profile:hz:{HZ} /pid == {svc.pid}/ {{ @[ustack] = count(); }}"
                    argv = [BPFTRACE, "-e", prog]
                    results[tool].append(_sample_external(tool, argv, svc, window))
    base = median([x.load.rps for x in results["baseline"] if x.load])
    t = Table([
        "tool", "ready after", "start-up CPU", "CPU while sampling", "RSS while sampling",
        "peak RSS", "stop: wall / CPU", "samples per target CPU-s", "target req/s vs none",
        "target CPU µs/req", "hottest leaf",
    ])
    notes = []
    for tool in tools:
        runs = [x for x in results[tool] if x.load]
        if not runs:
            notes += [f"{tool}: {x.note}" for x in results[tool] if x.note][:1]
            t.add(tool, *(["n/a"] * 10))
            continue
        rps = median([x.load.rps for x in runs])
        us_req = median([x.load.target_cpu_s / x.load.requests * 1e6 for x in runs])
        if tool == "baseline":
            t.add("none (baseline)", "", "", "", "", "", "", "", f"{rps:,.0f} req/s",
                  f"{us_req:.1f}", "")
            continue
        per_cpu = median([x.samples / x.load.target_cpu_s for x in runs if x.load.target_cpu_s])
        t.add(
            tool,
            f"{median([x.ready_s for x in runs]):.2f} s",
            f"{median([x.startup_cpu_s for x in runs]):.2f} s",
            f"{median([x.window_cpu_s / x.load.seconds for x in runs]) * 100:.2f} % of a core",
            f"{median([x.rss_kib for x in runs]) / 1024:.0f} MiB",
            f"{median([x.peak_kib for x in runs]) / 1024:.0f} MiB",
            f"{median([x.exit_s for x in runs]):.2f} s / "
            f"{median([x.exit_cpu_s for x in runs]):.2f} s",
            f"{per_cpu:.1f}",
            f"{rps / base:.3f}",
            f"{us_req:.1f}",
            runs[-1].top or "?",
        )
    s = Section(
        "side_by_side", "CPU sampling side by side: agent, bcc profile, bpftrace",
        "say how we compare, measured in the same run.", [t],
    )
    s.notes.append(
        f"{rounds} round(s) of {window:g} s windows, tools rotated each round; wrk -t1 -c8 "
        "saturates the healthy faultsvc on 127.0.0.1. CPU/RSS of each tool's own process "
        "(/proc/PID/stat, /proc/PID/status; peak from wait4's ru_maxrss)."
    )
    s.notes.append(
        f"Commands: `{PROFILE_BCC} -F {HZ} -U -f -p PID` (stopped with SIGINT); "
        f"`bpftrace -e 'profile:hz:{HZ} /pid == PID/ {{ @[ustack] = count(); }}'` (SIGINT); "
        f"`python3 -m bpf.agent --pid PID --hz {HZ} --enable cpu_stacks "
        "--disable goroutines,throttle`."
    )
    s.notes += notes
    return s
