"""Exact live goroutine count from uprobes (off by default: it costs ~10 µs
per goroutine created and per goroutine exited on this VM).

Uprobes at every RET of ``runtime.newproc1`` (found by walking the function
with ``bpf.symbols.x86ret``'s length decoder; ``objdump`` when the decoder
cannot size the bytes) count creations, one at ``runtime.goexit1``'s entry
counts exits. Never uretprobes: they rewrite return addresses on goroutine
stacks and crash Go programs.

The counters start at attach, so a baseline comes from the pprof index
(``runtime.NumGoroutine``): read the net count n0, fetch the index (b), wait
for the net count to return to n0 (the request's own server goroutines have
exited and nothing else churned), then ``offset = b - n0``; retry otherwise.
The count therefore matches what the pprof index reports, including the
goroutines that serve that request, so the two sources agree on screen.
Re-synced every ``resync_s`` seconds the same way.
"""

from __future__ import annotations

import platform
import time
from typing import Any

from bpf.bcc_env import BccCollector
from bpf.collectors.base import CollectorError, Frame
from bpf.schema import make_frame

RESYNC_S = 30.0
SETTLE_S = 0.5


class GoroutinesUprobe(BccCollector):
    name = "goroutines_uprobe"
    cost = "~10 µs per goroutine created/exited on this VM (uprobes; single-stepped)"
    default_on = False
    needs_go = True
    c_file = "goroutines_uprobe.c"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.offset: int | None = None
        self.baseline = "none"
        self.ret_sites: list[int] = []
        self.ret_finder = ""
        self._prev = (0, 0)
        self._last = 0.0
        self._synced_at = 0.0

    def defines(self) -> dict[str, Any]:
        return {"TARGET_TGID": int(self.target.pid)}

    def find_returns(self) -> list[int]:
        """Link-time addresses of newproc1's RET instructions."""
        from bpf.symbols.x86ret import DecodeError, ret_addresses, ret_addresses_objdump

        if platform.machine() != "x86_64":
            raise CollectorError("unsupported_arch",
                                 f"the uprobe goroutine counter supports x86-64 only, not "
                                 f"{platform.machine()}", "use the pprof goroutine count")
        start, end, b = self.go_function("runtime.newproc1")
        code = b.elf.read_vaddr(start, end - start)
        rets: list[int] | None = None
        try:
            rets = ret_addresses(code, start) if code else None
            self.ret_finder = "length decoder"
        except DecodeError:
            rets = None
        if not rets:
            rets = ret_addresses_objdump(self.target.exe, start, end)
            self.ret_finder = "objdump"
        if not rets:
            raise CollectorError("no_ret", "found no RET instruction in runtime.newproc1",
                                 "use the pprof goroutine count (the goroutines collector)")
        return rets

    def attach(self) -> None:
        self.ret_sites = self.find_returns()
        for a in self.ret_sites:
            self.attach_uprobe_at(a, "gkd_g_new")
        start, _end, _b = self.go_function("runtime.goexit1")
        self.attach_uprobe_at(start, "gkd_g_exit")
        self._last = time.monotonic()
        self._prev = self.counters()
        self.sync()

    def counters(self) -> tuple[int, int]:
        """(created, exited) since attach, summed over CPUs."""
        m = self.bpf["gkd_gcount"]
        return int(m.sum(m.Key(0)).value), int(m.sum(m.Key(1)).value)

    def net(self) -> int:
        c, e = self.counters()
        return c - e

    def _index_count(self) -> int | None:
        from bpf.collectors.goroutines import parse_index_goroutines
        from bpf.netns_http import HttpError, http_get

        port = int(self.options.get("pprof_port") or 6060)
        try:
            body = http_get(self.target.netns, port, "/debug/pprof/", timeout=2.0,
                            max_bytes=1 << 20)
        except HttpError:
            return None
        return parse_index_goroutines(body.decode("utf-8", "replace"))

    def sync(self, tries: int = 5, settle_s: float = SETTLE_S) -> bool:
        """Take the baseline from the pprof index (see the module docstring)."""
        self._synced_at = time.monotonic()
        for _ in range(tries):
            n0 = self.net()
            b = self._index_count()
            if b is None:
                if self.offset is None:
                    self.baseline = "none"
                return False
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline:
                if self.net() == n0:
                    self.offset = b - n0
                    self.baseline = "pprof_index"
                    return True
                time.sleep(0.01)
        if self.offset is None:
            self.offset = b - n0
            self.baseline = "unsteady"
        return False

    def read_frames(self) -> list[Frame]:
        if time.monotonic() - self._synced_at > float(self.options.get("resync_s", RESYNC_S)):
            # One short try: a poll must not stall the agent's other collectors;
            # a busy moment keeps the previous baseline until the next resync.
            self.sync(tries=1, settle_s=0.2)
        created, exited = self.counters()
        pc, pe = self._prev
        self._prev = (created, exited)
        now = time.monotonic()
        interval_ns = int((now - self._last) * 1e9)
        self._last = now
        net = created - exited
        count = net + self.offset if self.offset is not None else net
        return [make_frame("goroutines", t=self.clock_now_ns(), count=int(count),
                           source="uprobe", created=created - pc, exited=exited - pe,
                           interval_ns=interval_ns, baseline=self.baseline)]


COLLECTOR = GoroutinesUprobe
