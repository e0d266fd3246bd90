"""Synthetic frame sequences for the findings tests (pure data, no I/O).

Each builder returns frames as the agent would send them over ``seconds``
seconds, one per second, ending at ``T0 + seconds``.
"""

from __future__ import annotations

import base64
import gzip

from bpf.schema import intern_stacks, make_frame
from tui.profiles.writer import build_profile

T0 = 1_764_100_000 * 1_000_000_000  # a fixed wall-clock start, ns
S = 1_000_000_000

APP = ("runtime.goexit", "main.main", "main.serve")


def throttle(seconds: int, throttled: int, periods: int = 10, quota_us: int = 20000,
             usage_ns: int = 200_000_000) -> list[dict]:
    out = []
    for i in range(1, seconds + 1):
        c = {"nr_periods": periods, "nr_throttled": throttled,
             "throttled_ns": throttled * 5_000_000,
             "usage_ns": usage_ns, "quota_us": quota_us, "period_us": 100000}
        out.append(make_frame("throttle", t=T0 + i * S, interval_ns=S, cgroup_version=1,
                              container=c, pod=dict(c)))
    return out


def goroutines(counts: list[int]) -> list[dict]:
    return [make_frame("goroutines", t=T0 + (i + 1) * S, count=c, source="pprof_index")
            for i, c in enumerate(counts)]


def cpu(seconds: int, stacks: list[tuple[tuple[str, ...], int]], hz: int = 49) -> list[dict]:
    funcs, st = intern_stacks(stacks)
    return [make_frame("cpu_stacks", t=T0 + i * S, interval_ns=S, hz=hz,
                       samples=sum(c for _, c in stacks), lost=0, funcs=funcs, stacks=st)
            for i in range(1, seconds + 1)]


def gc(seconds: int, per_s: int, heap: int = 10 << 20) -> list[dict]:
    return [make_frame("gc", t=T0 + i * S, interval_ns=S, cycles=per_s, source="uprobe",
                       heap_bytes=heap) for i in range(1, seconds + 1)]


def futex(seconds: int, waits: int, wait_ns: int) -> list[dict]:
    return [make_frame("futex", t=T0 + i * S, interval_ns=S, waits=waits, wait_ns=wait_ns,
                       by_op={"0": [waits, wait_ns]}, hist=[], top_threads=[], timeouts=0,
                       eagain=0) for i in range(1, seconds + 1)]


def profile(kind: str, t: int, sample_types: list[tuple[str, str]],
            samples: list[tuple[tuple[str, ...], list[int]]], seconds: float = 0,
            empty: bool = False, note: str = "") -> dict:
    msg = build_profile(sample_types, samples)
    data = gzip.compress(msg.SerializeToString())
    return make_frame("profile", t=t, id=f"{kind}-1", profile=kind, seconds=seconds,
                      data="" if empty else base64.b64encode(data).decode(), size=len(data),
                      empty=empty, note=note)


MUTEX_TYPES = [("contentions", "count"), ("delay", "nanoseconds")]
GOROUTINE_TYPES = [("goroutine", "count")]
