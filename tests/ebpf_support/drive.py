"""Run collectors in-process under the system python3 (the one bcc imports
in) and print what they emit, for the eBPF tests (which run in the venv).

    /usr/bin/python3 tests/ebpf_support/drive.py --pid N --collector cpu_stacks \\
        --seconds 5 [--interval 1] [--opt hz=99] [--ready-file F]

Output: JSON lines. ``{"event": "before"|"started"|"after", "attached": {...}}``
around the run (BPF programs named gkd_* system-wide, BPF/perf fds of this
process), each frame as ``{"event": "frame", "frame": {...}}``, and
``{"event": "error", ...}`` for a CollectorError.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from bpf import bcc_env  # noqa: E402
from bpf.collectors.base import CollectorError  # noqa: E402
from bpf.target import resolve  # noqa: E402


def out(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--collector", action="append", required=True)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--opt", action="append", default=[])
    p.add_argument("--ready-file")
    a = p.parse_args()
    opts = {"interval": a.interval}
    for kv in a.opt:
        k, v = kv.split("=", 1)
        opts[k] = int(v) if v.isdigit() else v
    for m in bcc_env.ensure_tracefs():
        out({"event": "log", "msg": m})
    target = resolve(pid=a.pid)
    out({"event": "before", "attached": bcc_env.attached_summary()})
    cols = []
    try:
        for name in a.collector:
            mod = importlib.import_module("bpf.collectors." + name)
            c = mod.COLLECTOR(target, opts, lambda f: out({"event": "frame", "frame": f}))
            t0 = time.monotonic()
            c.start()
            cols.append(c)
            out({"event": "started", "collector": name, "start_s": time.monotonic() - t0,
                 "attached": bcc_env.attached_summary()})
        if a.ready_file:
            with open(a.ready_file, "w") as f:
                f.write("ready")
        end = time.monotonic() + a.seconds
        while time.monotonic() < end:
            time.sleep(min(a.interval, max(0.0, end - time.monotonic())))
            for c in cols:
                for fr in c.poll():
                    out({"event": "frame", "frame": fr})
    except CollectorError as e:
        out({"event": "error", "code": e.code, "msg": e.msg, "hint": e.hint})
    finally:
        detached = sum(c.stop() for c in cols)
        for c in cols:
            c.stop()  # idempotent
        out({"event": "after", "detached": detached, "attached": bcc_env.attached_summary(),
             "shared": bcc_env.shared_stats()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
