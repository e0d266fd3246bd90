"""Overhead of the attached agent on the target's throughput.

Two identical healthy faultsvc processes (twins A and B, their own load
generators off) are each saturated by their own wrk at the same time, so
whatever else the machine is doing hits both alike. Windows alternate:

- control: no agent; the A/B throughput ratio shows the noise floor;
- attached: the agent watches A (even rounds) or B (odd rounds); the
  watched/unwatched ratio is the overhead plus noise, and swapping the twin
  cancels any A/B difference.

The agent is started, and every collector it was asked for has reported
on (bcc compiled), before its window begins: the window measures the steady
cost, not start-up.
"""

from __future__ import annotations

import threading
from contextlib import ExitStack

from tests.bench import procs
from tests.bench.report import Section, Table
from tests.bench.stats import median, pct

DATA_KINDS = ("cpu_stacks", "goroutines", "throttle", "futex", "gc")


def _twin_load(twins: list[procs.Service], window: float) -> list[procs.Load]:
    """Saturate both twins at once for ``window`` seconds; one Load each."""
    out: list[procs.Load | None] = [None, None]

    def one(i: int) -> None:
        out[i] = procs.run_load(twins[i], window)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if None in out:
        raise procs.BenchError("a load window failed (see the error above)")
    return out  # type: ignore[return-value]


def _event_count(frames: list[dict]) -> float:
    """Probe hits the frames account for: futex waits and uprobe goroutine events."""
    n = 0.0
    for f in frames:
        if f.get("kind") == "futex":
            n += f.get("waits", 0)
        elif f.get("kind") == "goroutines" and f.get("source") == "uprobe":
            n += f.get("created", 0) + f.get("exited", 0)
    return n


def _measure(enable: list[str], rounds: int, window: float) -> dict:
    extra = ["--enable", ",".join(enable)] if enable else []
    control: list[float] = []
    attached: list[float] = []
    cpu_control: list[float] = []
    cpu_attached: list[float] = []
    rps_on: list[float] = []
    rps_off: list[float] = []
    events: list[float] = []
    extra_cpu: list[float] = []  # µs of target CPU per second above the unwatched twin
    on_names: list[str] = []
    unavailable: dict[str, str] = {}
    problems: list[str] = []
    with ExitStack() as stack:
        twins = [stack.enter_context(procs.faultsvc("healthy")) for _ in range(2)]
        _twin_load(twins, 2)  # warm-up: connections, heap, page cache
        for r in range(rounds):
            a_load, b_load = _twin_load(twins, window)
            control.append(a_load.rps / b_load.rps)
            cpu_control.append(_cpu_per_req(a_load) / _cpu_per_req(b_load))
            watched = r % 2
            svc = twins[watched]
            with procs.agent(svc.pid, svc.pprof_port, *extra) as a:
                a.wait_started()
                n0 = len(a.frames)
                loads = _twin_load(twins, window)
                with a.lock:
                    window_frames = a.frames[n0:]
                on_names = a.collectors_on()
                hello = next(iter(a.kinds("hello")), {})
                for c in hello.get("collectors", []):
                    if c["name"] in enable and not c["available"]:
                        unavailable[c["name"]] = c["reason"]
                problems = a.problems()
            on, off = loads[watched], loads[1 - watched]
            attached.append(on.rps / off.rps)
            cpu_attached.append(_cpu_per_req(on) / _cpu_per_req(off))
            rps_on.append(on.rps)
            rps_off.append(off.rps)
            events.append(_event_count(window_frames) / window)
            extra_cpu.append((_cpu_per_req(on) - _cpu_per_req(off)) * on.rps)
            procs.log(
                f"  round {r + 1}/{rounds}: watched/unwatched {attached[-1]:.3f}, "
                f"control A/B {control[-1]:.3f}"
            )
    return {
        "control": control, "attached": attached, "cpu_control": cpu_control,
        "cpu_attached": cpu_attached, "rps_on": rps_on, "rps_off": rps_off, "events": events,
        "extra_cpu": extra_cpu, "on": on_names, "unavailable": unavailable, "problems": problems,
    }


def _cpu_per_req(load: procs.Load) -> float:
    return load.target_cpu_s / load.requests * 1e6 if load.requests else float("nan")


def _spread(xs: list[float]) -> str:
    return f"{median(xs):.3f} ({min(xs):.3f} to {max(xs):.3f})"


def _section(name: str, title: str, goal: str, enable: list[str], rounds: int, window: float):
    m = _measure(enable, rounds, window)
    # Control windows are A/B: fold them around 1 so their spread reads as a noise floor.
    t = Table(["windows", "throughput ratio: median (min to max)", "CPU/request ratio", "rounds"])
    t.add("control, no agent (A/B)", _spread(m["control"]), _spread(m["cpu_control"]), rounds)
    t.add("agent attached (watched/unwatched twin)", _spread(m["attached"]),
          _spread(m["cpu_attached"]), rounds)
    s = Section(name, title, goal, [t])
    s.notes.append(
        f"Throughput change of the watched service: {pct(median(m['attached']) - 1)} "
        f"(median over {rounds} windows; unwatched twin {median(m['rps_off']):,.0f} req/s, "
        f"watched {median(m['rps_on']):,.0f} req/s). The control row is the noise floor of the "
        "same measurement without any agent: an effect smaller than its spread is not resolved."
    )
    s.notes.append(
        f"Set-up: two healthy faultsvc twins, each saturated by its own `wrk -t1 -c8` on "
        f"127.0.0.1 (GET /api/items?limit=20) in the same {window:g} s windows; the agent "
        "watches A and B in turn. CPU/request from the target's /proc/PID/stat."
    )
    s.notes.append("Collectors on in the attached windows: " + (", ".join(m["on"]) or "none"))
    for c, why in m["unavailable"].items():
        s.notes.append(f"Asked for `{c}` but the agent reported it unavailable: {why}")
    for p in m["problems"]:
        s.notes.append(f"Agent error frame: {p}")
    hits = median(m["events"])
    if enable and hits > 0:
        per_hit = median([x / h for x, h in zip(m["extra_cpu"], m["events"], strict=True) if h])
        cost = f"{per_hit:.2f} µs" if per_hit > 0 else "not resolved (below the noise floor)"
        s.notes.append(
            f"Probe hits counted by the agent: {hits:,.0f}/s in the watched twin. Estimated "
            f"extra target CPU per hit: {cost} (the watched twin's CPU per request "
            "above the unwatched one's, x its requests/s, / hits/s; median over windows; only "
            "the target's share: the tracepoints' cost on other processes is not in it)."
        )
    return s


def default_collectors(quick: bool = False) -> Section:
    """Throughput loss with the default collectors (CPU stacks 49 Hz, throttling, goroutines)."""
    return _section(
        "overhead", "Overhead on the target: default collectors",
        "under 1 % throughput loss on the healthy service.",
        [], rounds=2 if quick else 6, window=2 if quick else 5,
    )


def futex_only(quick: bool = False) -> Section:
    """Defaults plus the futex-wait collector (syscall tracepoints)."""
    return _section(
        "overhead_futex", "Overhead on the target: defaults + futex waits",
        "state the loss and the per-hit cost.",
        ["futex"], rounds=2 if quick else 6, window=2 if quick else 5,
    )


def uprobe_only(quick: bool = False) -> Section:
    """Defaults plus the exact goroutine counter (uprobes on runtime.newproc1/goexit1)."""
    return _section(
        "overhead_uprobe", "Overhead on the target: defaults + uprobe goroutine counter",
        "state the loss and the per-hit cost (a uprobe hit on Go code is single-stepped).",
        ["goroutines_uprobe"], rounds=2 if quick else 6, window=2 if quick else 5,
    )


def futex_and_uprobes(quick: bool = False) -> Section:
    """Throughput loss with futex waits and the uprobe goroutine counter also on."""
    return _section(
        "overhead_futex_uprobe",
        "Overhead on the target: defaults + futex waits + uprobe goroutines",
        "state the loss and the per-hit cost (futex tracepoints fire on every futex call on "
        "the node).",
        ["futex", "goroutines_uprobe"], rounds=2 if quick else 6, window=2 if quick else 5,
    )
