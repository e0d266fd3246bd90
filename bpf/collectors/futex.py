"""Futex waits: how many of the target's OS threads sleep in futex(2), and for
how long, per interval.

From the ``sys_enter_futex``/``sys_exit_futex`` tracepoints, filtered on the
target's TGID first, wait ops only (``op & 127`` in WAIT, WAIT_BITSET,
LOCK_PI, WAIT_REQUEUE_PI, LOCK_PI2). In a Go program these are parked OS
threads (idle Ms, sysmon, timers), not goroutines blocked on a sync.Mutex or
a channel: those park in the Go scheduler and show in the pprof mutex/block
profiles instead. Per-op totals and the log2 histogram are built over the
op's whole wait; per-thread totals name the busiest waiting threads.
"""

from __future__ import annotations

import time
from typing import Any

from bpf.bcc_env import BccCollector
from bpf.collectors.base import CollectorError, Frame
from bpf.collectors.cpu_stacks import drain_map
from bpf.schema import make_frame

WAIT_OPS = {0: "WAIT", 6: "LOCK_PI", 9: "WAIT_BITSET", 11: "WAIT_REQUEUE_PI", 13: "LOCK_PI2"}
TOP_THREADS = 10


def thread_comm(pid: int, tid: int) -> str:
    """A thread's name (``/proc/PID/task/TID/comm``), empty once it exited."""
    try:
        with open(f"/proc/{pid}/task/{tid}/comm", "rb") as f:
            return f.read().strip().decode("utf-8", "replace")
    except OSError:
        return ""


class FutexWaits(BccCollector):
    name = "futex"
    cost = ("adds ~40 ns to every syscall on the node while on (syscall tracepoints), "
            "~0.3 µs per futex call of the target")
    default_on = False
    c_file = "futex.c"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._last = 0.0

    def defines(self) -> dict[str, Any]:
        return {"TARGET_TGID": int(self.target.pid)}

    def attach(self) -> None:
        # Attached here, not by bcc at load: the compiled module is shared with
        # the other collectors and loaded while futex may be off.
        for tp in ("sys_enter_futex", "sys_exit_futex"):
            self.bpf.attach_tracepoint(tp=f"syscalls:{tp}", fn_name=f"tracepoint__syscalls__{tp}")
            self.attached += 1
        self._last = time.monotonic()

    def drain(self) -> dict[str, Any]:
        """The counts since the last drain, as the fields of a futex frame."""
        b = self.bpf
        by_op: dict[str, list[int]] = {}
        hist: dict[int, int] = {}
        waits = 0
        for k, count in drain_map(b["gkd_fhist"]):
            hist[k.slot] = hist.get(k.slot, 0) + count
        for op, ov in drain_map(b["gkd_fops"]):
            by_op[str(op)] = [int(ov.waits), int(ov.ns)]
            waits += int(ov.waits)
        wait_ns = sum(v[1] for v in by_op.values())
        threads = []
        for tid, tv in drain_map(b["gkd_fthreads"]):
            threads.append((int(tv.ns), int(tv.waits), int(tid)))
        stats = b["gkd_fstats"]
        timeouts = stats[stats.Key(0)].value
        eagain = stats[stats.Key(1)].value
        stats.clear()
        threads.sort(reverse=True)
        top = [{"tid": tid, "comm": thread_comm(self.target.pid, tid), "waits": w, "wait_ns": ns}
               for ns, w, tid in threads[:TOP_THREADS]]
        return {"waits": waits, "wait_ns": int(wait_ns), "by_op": by_op,
                "hist": sorted([s, c] for s, c in hist.items()), "top_threads": top,
                "timeouts": int(timeouts), "eagain": int(eagain)}

    def read_frames(self) -> list[Frame]:
        try:
            fields = self.drain()
        except OSError as e:
            raise CollectorError("bpf_read", f"futex: reading the maps failed: {e}",
                                 "the agent keeps the other collectors running") from None
        now = time.monotonic()
        interval_ns = int((now - self._last) * 1e9)
        self._last = now
        return [make_frame("futex", t=self.clock_now_ns(), interval_ns=interval_ns, **fields)]


COLLECTOR = FutexWaits
