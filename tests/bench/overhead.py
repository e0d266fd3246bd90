"""Overhead of the attached agent on the target's throughput.

The healthy faultsvc (its own load generator off) is saturated by wrk on
loopback. Windows without and with the agent attached alternate (ABBA); the
agent is started and has reported its collectors before its window begins, so
the window measures the steady cost, not bcc's compile.
"""

from __future__ import annotations

from tests.bench import procs
from tests.bench.report import Section, Table
from tests.bench.stats import abba, median, pct

DATA_KINDS = ("cpu_stacks", "goroutines", "throttle", "futex", "gc")


def _measure(enable: list[str], rounds: int, window: float) -> dict:
    extra = ["--enable", ",".join(enable)] if enable else []
    loads: dict[str, list[procs.Load]] = {"off": [], "on": []}
    events: list[float] = []
    on_names: list[str] = []
    unavailable: dict[str, str] = {}
    problems: list[str] = []
    with procs.faultsvc("healthy") as svc:
        procs.run_load(svc, 2)  # warm-up: connections, heap, JIT-free but caches
        for cond in abba(rounds, "off", "on"):
            if cond == "off":
                loads["off"].append(procs.run_load(svc, window))
                continue
            with procs.agent(svc.pid, svc.pprof_port, *extra) as a:
                a.wait_started()
                n0 = len(a.frames)
                load = procs.run_load(svc, window)
                with a.lock:
                    window_frames = a.frames[n0:]
                on_names = a.collectors_on()
                hello = next(iter(a.kinds("hello")), {})
                for c in hello.get("collectors", []):
                    if c["name"] in enable and not c["available"]:
                        unavailable[c["name"]] = c["reason"]
                problems = a.problems()
            loads["on"].append(load)
            events.append(_event_count(window_frames))
    return {
        "loads": loads, "events": events, "on": on_names,
        "unavailable": unavailable, "problems": problems,
    }


def _event_count(frames: list[dict]) -> float:
    """Probe hits the frames account for: futex waits and uprobe goroutine events."""
    n = 0.0
    for f in frames:
        if f.get("kind") == "futex":
            n += f.get("waits", 0)
        elif f.get("kind") == "goroutines" and f.get("source") == "uprobe":
            n += f.get("created", 0) + f.get("exited", 0)
    return n


def _section(name: str, title: str, goal: str, enable: list[str], rounds: int, window: float):
    m = _measure(enable, rounds, window)
    off, on = m["loads"]["off"], m["loads"]["on"]
    ratios = [b.rps / a.rps for a, b in zip(off, on, strict=True)]
    cpu_req = {k: [x.target_cpu_s / x.requests * 1e6 for x in v] for k, v in m["loads"].items()}
    t = Table(["condition", "requests/s (median)", "rounds (req/s)", "target CPU µs/request"])
    for cond, label in (("off", "agent detached"), ("on", "agent attached")):
        xs = m["loads"][cond]
        t.add(
            label,
            f"{median([x.rps for x in xs]):,.0f}",
            ", ".join(f"{x.rps:,.0f}" for x in xs),
            f"{median(cpu_req[cond]):.1f}",
        )
    loss = 1 - median(ratios)
    cpu_ratios = [b / a for a, b in zip(cpu_req["off"], cpu_req["on"], strict=True)]
    s = Section(name, title, goal, [t])
    s.notes.append(
        f"Throughput change with the agent attached: {pct(-loss)} (median of {len(ratios)} "
        f"paired rounds; pair ratios {min(ratios):.3f} to {max(ratios):.3f}). "
        f"Windows of {window:g} s, wrk -t1 -c8 on 127.0.0.1, GET /api/items?limit=20."
    )
    s.notes.append(
        f"Target CPU per request with the agent attached: {pct(median(cpu_ratios) - 1)} "
        f"(median pair ratio; {min(cpu_ratios):.3f} to {max(cpu_ratios):.3f}). On a busy "
        "shared machine this is the steadier measure: throughput also moves with how much CPU "
        "the other tenants leave, CPU per request mostly with what the target itself does."
    )
    s.notes.append("Collectors on during the attached windows: " + (", ".join(m["on"]) or "none"))
    for c, why in m["unavailable"].items():
        s.notes.append(f"Asked for `{c}` but the agent reported it unavailable: {why}")
    for p in m["problems"]:
        s.notes.append(f"Agent error frame: {p}")
    if enable and sum(m["events"]):
        total_req = sum(x.requests for x in on)
        extra_cpu = (median(cpu_req["on"]) - median(cpu_req["off"])) * total_req
        per_event = extra_cpu / sum(m["events"])
        s.notes.append(
            f"Probe hits counted in the attached windows: "
            f"{sum(m['events']) / (len(on) * window):,.0f}/s; "
            f"estimated extra target CPU per hit: {per_event:.1f} µs "
            "(rise in target CPU per request x requests / hits; noisy on a shared machine)."
        )
    return s


def default_collectors(quick: bool = False) -> Section:
    """Throughput loss with the default collectors (CPU stacks 49 Hz, throttling, goroutines)."""
    return _section(
        "overhead", "Overhead on the target: default collectors",
        "under 1 % throughput loss on the healthy service.",
        [], rounds=2 if quick else 6, window=2 if quick else 4,
    )


def futex_and_uprobes(quick: bool = False) -> Section:
    """Throughput loss with futex waits and the uprobe goroutine counter also on."""
    return _section(
        "overhead_futex_uprobe",
        "Overhead on the target: defaults + futex waits + uprobe goroutines",
        "state the loss and the per-hit cost (futex tracepoints fire on every futex call on "
        "the node).",
        ["futex", "goroutines_uprobe"], rounds=2 if quick else 6, window=2 if quick else 4,
    )
