"""CPU stacks: where the target burns CPU, from perf-event sampling.

The pattern of bcc's tools/profile.py: a CPU_CLOCK perf event on every CPU at
``hz`` (49 by default, up to 99), a TGID test first, then the user stack id
counted in a kernel hash. Each interval the counts and stacks are drained and
symbolized with ``bpf.symbols`` (never bcc's ``sym()``, which reads the path
strings in /proc/PID/maps and prints ``[unknown]`` for a container after
chroot/pivot_root). Frames are physical frames from the frame-pointer walk,
with inlined calls expanded from the binary's pclntab.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bpf.bcc_env import BCC_LOCK, BccCollector
from bpf.collectors.base import CollectorError, Frame
from bpf.schema import intern_stacks, make_frame
from bpf.symbols import ProcessSymbolizer

MAX_HZ = 99
STACK_STORAGE = 16384


def _int(x: Any) -> int:
    return int(getattr(x, "value", x))


def drain_map(m: Any) -> list[tuple[Any, Any]]:
    """Read and empty a bcc hash in one step where the kernel has batch ops
    (5.6+); else read, then clear (a sample landing in between is lost).
    Keys and values come back as ints when they are scalars."""
    try:
        items = list(m.items_lookup_and_delete_batch())
    except Exception:
        items = list(m.items())
        m.clear()
    return [(_int(k) if not hasattr(k, "_fields_") else k,
             _int(v) if not hasattr(v, "_fields_") else v) for k, v in items]


class CpuStacks(BccCollector):
    name = "cpu_stacks"
    cost = "49 samples/s per CPU: negligible"
    default_on = True
    c_file = "cpu_stacks.c"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.sym: ProcessSymbolizer | None = None
        self._last = 0.0
        self._drains = 0
        self.hz = self._hz()

    def _hz(self) -> int:
        return max(1, min(MAX_HZ, int(self.options.get("hz") or 49)))

    def defines(self) -> dict[str, Any]:
        return {"TARGET_TGID": int(self.target.pid), "STACK_STORAGE": STACK_STORAGE}

    def attach(self) -> None:
        self.sym = ProcessSymbolizer(self.target.pid)
        self._attach_sampling()
        self.attached = os.cpu_count() or 1

    def _attach_sampling(self) -> None:
        from bcc import PerfSWConfig, PerfType

        self.bpf.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                                   fn_name="gkd_cpu_sample", sample_freq=self.hz, cpu=-1)
        self._last = time.monotonic()

    def configure(self, changes: dict[str, Any]) -> bool:
        """A new ``hz`` re-opens the perf events on the loaded program (no
        compile); only while another collector compiles does it ask the agent
        for a restart instead."""
        self.options.update(changes)
        hz = self._hz()
        if hz == self.hz:
            return False
        self.hz = hz
        if self.bpf is None:
            return False
        if not BCC_LOCK.acquire(blocking=False):
            return True
        try:
            from bcc import PerfSWConfig, PerfType

            self.bpf.detach_perf_event(PerfType.SOFTWARE, PerfSWConfig.CPU_CLOCK)
            self.reset_maps()  # samples taken at the old rate would be counted at the new
            self._attach_sampling()
        except Exception:
            return True  # the restart detaches what is left and attaches afresh
        finally:
            BCC_LOCK.release()
        return False

    def drain(self) -> tuple[list[tuple[tuple[str, ...], int]], int, int]:
        """``([(frames root-first, count)], samples, lost)`` since the last drain."""
        b = self.bpf
        counts_map, stacks = b["gkd_counts"], b["gkd_stacks"]
        raw = drain_map(counts_map)
        stats = b["gkd_cpu_stats"]
        samples = stats[stats.Key(0)].value
        lost = stats[stats.Key(1)].value
        stats.clear()
        merged: dict[tuple[str, ...], int] = {}
        for stack_id, count in raw:
            try:
                addrs = list(stacks.walk(stack_id))
            except KeyError:
                lost += count
                continue
            frames = self.sym.stack(addrs) if self.sym else ()
            if not frames:
                lost += count
                continue
            merged[frames] = merged.get(frames, 0) + count
            try:
                del stacks[stacks.Key(stack_id)]
            except KeyError:
                pass
        # Drained stacks were deleted one by one above (a full clear would
        # also drop the stacks of samples taken since the drain). Entries whose
        # count never landed (count map full) would pile up: clear them when
        # the map is half full (checked every 30 drains: len() walks the keys).
        self._drains += 1
        if self._drains % 30 == 0 and len(stacks) > STACK_STORAGE // 2:
            stacks.clear()
        return sorted(merged.items(), key=lambda kv: -kv[1]), samples, lost

    def read_frames(self) -> list[Frame]:
        try:
            stacks, samples, lost = self.drain()
        except OSError as e:
            raise CollectorError("bpf_read", f"cpu_stacks: reading the maps failed: {e}",
                                 "the agent keeps the other collectors running") from None
        now = time.monotonic()
        interval_ns = int((now - self._last) * 1e9)
        self._last = now
        funcs, packed = intern_stacks(stacks)
        return [make_frame("cpu_stacks", t=self.clock_now_ns(), interval_ns=interval_ns,
                           hz=self.hz, samples=int(samples), lost=int(lost), funcs=funcs,
                           stacks=packed)]


COLLECTOR = CpuStacks
