"""Measure what each eBPF collector costs the target, alternating runs with
and without it (run as root under the system python3):

    /usr/bin/python3 tests/ebpf_support/measure_costs.py GOPROG [ROUNDS] [ONLY,ONLY]

GOPROG is a build of ebpf_support/goprog. Each round starts ``goprog -mode
bench`` once per configuration; the program times 2M getppid() syscalls,
100k goroutines created and joined, and a fixed CPU loop. Prints the median
per configuration and the collector's own start time (bcc compile + attach).
"""

from __future__ import annotations

import importlib
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from bpf import bcc_env  # noqa: E402
from bpf.target import resolve  # noqa: E402

CONFIGS = [("none", None, {}), ("cpu_stacks 49 Hz", "cpu_stacks", {"hz": 49}),
           ("cpu_stacks 99 Hz", "cpu_stacks", {"hz": 99}), ("futex", "futex", {}),
           ("goroutines_uprobe", "goroutines_uprobe", {"pprof_port": 1}), ("gc", "gc", {})]


def one(binary: str, name: str | None, opts: dict) -> tuple[dict[str, float], float]:
    p = subprocess.Popen([binary, "-mode", "bench"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    p.stdout.readline()
    col, start_s = None, 0.0
    try:
        if name:
            mod = importlib.import_module("bpf.collectors." + name)
            col = mod.COLLECTOR(resolve(pid=p.pid), dict(opts, interval=1.0))
            t0 = time.monotonic()
            col.start()
            start_s = time.monotonic() - t0
        p.stdin.write("go\n")
        p.stdin.flush()
        res = {}
        for line in p.stdout:
            k, v = line.split()
            res[k] = float(v)
        p.wait()
        if col is not None:
            col.poll()
    finally:
        if col is not None:
            col.stop()
        if p.poll() is None:
            p.kill()
            p.wait()
    return res, start_s


def main() -> int:
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if len(sys.argv) > 3:
        only = set(sys.argv[3].split(","))
        CONFIGS[:] = [c for c in CONFIGS if c[1] is None or c[1] in only]
    bcc_env.ensure_tracefs()
    results: dict[str, list[dict[str, float]]] = {c[0]: [] for c in CONFIGS}
    starts: dict[str, list[float]] = {c[0]: [] for c in CONFIGS}
    for _ in range(rounds):
        for label, name, opts in CONFIGS:
            r, s = one(binary, name, opts)
            results[label].append(r)
            starts[label].append(s)
    base = {k: statistics.median(r[k] for r in results["none"]) for k in results["none"][0]}
    print(f"{'config':20} {'getppid ns':>11} {'goroutine ns':>13} {'cpu loop ms':>12} "
          f"{'start s':>8}")
    for label, _n, _o in CONFIGS:
        med = {k: statistics.median(r[k] for r in results[label]) for k in base}
        print(f"{label:20} {med['getppid_ns']:11.1f} {med['goroutine_ns']:13.1f} "
              f"{med['burn_ns'] / 1e6:12.2f} {statistics.median(starts[label]):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
