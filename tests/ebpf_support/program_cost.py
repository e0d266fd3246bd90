"""In-kernel cost of each collector's BPF programs on a live target, from the
kernel's own BPF statistics (run count and run time per program):

    /usr/bin/python3 tests/ebpf_support/program_cost.py GOPROG MODE COLLECTOR [SECONDS]

Turns ``kernel.bpf_stats_enabled`` on for the measurement and restores it.
Prints, per program: runs per second and ns per run. This is the program
only: the uprobe trap (~10 µs here) and the syscall slow path come on top.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from bpf import bcc_env  # noqa: E402
from bpf.target import resolve  # noqa: E402

STATS = "/proc/sys/kernel/bpf_stats_enabled"


def main() -> int:
    binary, mode, name = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 5
    p = subprocess.Popen([binary, "-mode", mode], stdout=subprocess.PIPE, text=True)
    port = p.stdout.readline().strip().rsplit(":", 1)[1]
    p.stdout.readline()
    old = open(STATS).read().strip()
    col = None
    try:
        with open(STATS, "w") as f:
            f.write("1")
        col = importlib.import_module("bpf.collectors." + name).COLLECTOR(
            resolve(pid=p.pid), {"interval": 1.0, "pprof_port": port})
        col.start()
        ids = bcc_env.process_bpf_fds()["prog_ids"]
        s0 = {i: v for i, v in bcc_env.program_stats().items() if i in ids}
        t0 = time.monotonic()
        for _ in range(int(seconds)):
            time.sleep(1)
            col.poll()
        s1 = bcc_env.program_stats()
        dt = time.monotonic() - t0
        for i, (pname, runs0, ns0) in sorted(s0.items()):
            _n, runs1, ns1 = s1[i]
            runs = runs1 - runs0
            per = (ns1 - ns0) / runs if runs else 0.0
            print(f"{name:18} {pname:16} {runs / dt:10.0f} runs/s {per:8.0f} ns/run")
    finally:
        if col is not None:
            col.stop()
        with open(STATS, "w") as f:
            f.write(old)
        p.kill()
        p.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
