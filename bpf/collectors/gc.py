"""Go GC cycles per interval, with the mark phase's duration.

Why uprobes and not pprof: the runtime's own GC counters (NumGC, PauseNs)
are reachable over HTTP only through ``/debug/pprof/heap?debug=1``, which
calls ``runtime.ReadMemStats`` (a stop-the-world) and builds the whole heap
profile on every read. Two entry uprobes cost a few hits per GC cycle instead
(~10 µs each on this VM; GC runs at most tens of times per second):

- ``runtime.gcMarkTermination`` entry: exactly once per completed cycle, so
  ``cycles`` is exact;
- ``runtime.gcStart`` entry: where a cycle begins (it may be entered more
  than once per cycle by racing allocators; the kernel side keeps the first),
  so ``cycle_ns`` is the time from the start of the cycle to mark termination:
  the concurrent mark phase, the part of a GC cycle that competes with the
  app for CPU. Stop-the-world pause times are not measured (they need a probe
  on every stop-the-world, most of which are not GC).
"""

from __future__ import annotations

import time
from typing import Any

from bpf.bcc_env import BccCollector
from bpf.collectors.base import CollectorError, Frame
from bpf.schema import make_frame


class GcCycles(BccCollector):
    name = "gc"
    cost = ("two uprobes hit a few times per GC cycle (~10 µs per hit on this VM): "
            "negligible unless the app runs hundreds of GCs per second")
    default_on = False
    needs_go = True
    c_file = "gc.c"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._prev = (0, 0)
        self._last = 0.0

    def defines(self) -> dict[str, Any]:
        return {"TARGET_TGID": int(self.target.pid)}

    def attach(self) -> None:
        start, _e, _b = self.go_function("runtime.gcStart")
        term, _e, _b = self.go_function("runtime.gcMarkTermination")
        self.attach_uprobe_at(start, "gkd_gc_start")
        self.attach_uprobe_at(term, "gkd_gc_term")
        self._last = time.monotonic()
        self._prev = self._read()[:2]

    def _read(self) -> tuple[int, int, int]:
        m = self.bpf["gkd_gc"]
        cycles = int(m[m.Key(0)].value)
        total = int(m[m.Key(1)].value)
        longest = int(m[m.Key(3)].value)
        m[m.Key(3)] = m.Leaf(0)
        return cycles, total, longest

    def read_frames(self) -> list[Frame]:
        try:
            cycles, total, longest = self._read()
        except (OSError, KeyError) as e:
            raise CollectorError("bpf_read", f"gc: reading the map failed: {e}",
                                 "the agent keeps the other collectors running") from None
        pc, pt = self._prev
        self._prev = (cycles, total)
        now = time.monotonic()
        interval_ns = int((now - self._last) * 1e9)
        self._last = now
        return [make_frame("gc", t=self.clock_now_ns(), interval_ns=interval_ns,
                           cycles=cycles - pc, source="uprobe", cycle_ns=total - pt,
                           max_cycle_ns=longest)]


COLLECTOR = GcCycles
